"""workload subsystem."""
