"""netsim subsystem."""
