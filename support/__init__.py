"""Small helpers every Ronda package may use: they import nothing else of the project.

- :mod:`support.backoff`: capped exponential backoff with full jitter, the one retry policy.
- :mod:`support.files`: atomic file writes (write, fsync, rename, fsync the directory).
"""
