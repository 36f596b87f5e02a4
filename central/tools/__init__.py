"""The Command Center's command-line tools, run by `ronda` on an operator's machine:
`ronda cmd` (sign a command, send it, wait for the reply) and `ronda watch` (a live
table of every node). Not installed on a node (docs/architecture.md, "Where tools live").
"""

from __future__ import annotations

import argparse

from central.settings import read_secret
from support.cli import formatter  # noqa: F401  (the tools import it from here)


def password(args: argparse.Namespace) -> str | None:
    """The MQTT password of `--password-file` (its first line), or None without one."""
    return read_secret(args.password_file) if args.password_file else None
