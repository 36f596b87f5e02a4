"""`ronda check-config` and `ronda config-schema`."""

from __future__ import annotations

import argparse
import json
import sys

from firmware import config
from firmware.commands import formatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check-config", formatter_class=formatter,
        help="validate a config file; exit 0 if valid, 78 if not",
        description="Validate a ronda.toml and print every problem with its field, the bad\n"
                    "value and what is expected.\n\n"
                    "example:\n  ronda check-config /boot/firmware/ronda.toml",
    )
    p.add_argument("file", help="the TOML config file")
    p.set_defaults(func=check_config)

    p = sub.add_parser("config-schema", formatter_class=formatter,
                       help="print the JSON Schema of the config file",
                       description="Print the JSON Schema of ronda.toml (every key, its type,\n"
                                   "default and meaning), for editors and validators.")
    p.set_defaults(func=config_schema)


def check_config(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.file)
    except config.ConfigError as exc:
        print(f"{exc.source}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return config.EX_CONFIG
    enabled = [c.name for c in cfg.cameras if c.enabled]
    print(f"{args.file}: valid (node {cfg.node.id}, {len(enabled)} camera(s): "
          f"{', '.join(enabled) or 'none'})")
    return 0


def config_schema(args: argparse.Namespace) -> int:
    json.dump(config.json_schema(), sys.stdout, indent=2)
    print()
    return 0
