"""aio subsystem."""
