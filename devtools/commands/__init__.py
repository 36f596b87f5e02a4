"""`ronda` sub-commands for development: `ronda demo`, `ronda fleet-sim`, `ronda dev-node`.

Each module has `register(subparsers)` like `firmware/commands/`; `ronda` launches them
through `firmware/tools.py`, and a node's release does not have them.
"""
