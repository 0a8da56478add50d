"""codecs subsystem."""
