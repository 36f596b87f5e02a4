"""What every command-line parser of the project shares (`ronda`, `ronda-central`, the tools).

>>> import argparse
>>> argparse.ArgumentParser(prog="x", formatter_class=formatter).formatter_class is formatter
True
"""

from __future__ import annotations

import argparse


def formatter(prog: str) -> argparse.HelpFormatter:
    """Help that keeps the examples in descriptions as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)
