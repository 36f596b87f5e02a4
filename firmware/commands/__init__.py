"""Sub-commands of `ronda`: one module per area, each with `register(subparsers)`."""

import argparse


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help that keeps the examples in descriptions as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)
