"""Continuous recording into a crash-safe ring buffer of segments, with protected event clips."""
