"""traces subsystem."""
