"""Ronda firmware: the daemon, its config, CLI and the wiring between packages.

`firmware` is the only package that imports the others (drivers, recorder, inference,
mqtt); they never import it nor each other's internals.
"""

__version__ = "0.1.0"
