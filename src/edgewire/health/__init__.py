"""health subsystem."""
