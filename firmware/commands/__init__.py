"""Sub-commands of `ronda`: one module per area, each with `register(subparsers)`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from support.cli import formatter  # noqa: F401  (the commands import it from here)

if TYPE_CHECKING:
    from firmware.config import Config


def load_config_or_exit(path: str) -> Config:
    """The validated config at `path`; else print every problem and exit 78 (EX_CONFIG)."""
    from firmware import config

    try:
        return config.load(path)
    except config.ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        raise SystemExit(config.EX_CONFIG) from None
