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
                    "value and what is expected. Both forms are accepted: the installed file\n"
                    "and the boot-partition file with [provision] and [secrets] (checked as\n"
                    "first boot would; a secret's value is never printed).\n\n"
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
    if _has_secrets_table(args.file):
        return _check_boot_form(args.file)
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


def _has_secrets_table(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return "secrets" in config.tomllib.load(fh)
    except (OSError, config.tomllib.TOMLDecodeError):
        return False


def _check_boot_form(path: str) -> int:
    """The boot-partition form: validated by first boot's own planner, changing nothing."""
    from pathlib import Path

    from drivers.cameras.base import mask_credentials
    from firmware.provision.firstboot import ProvisionError, check

    try:
        node = check(Path(path), empty_ok=True)
    except ProvisionError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {mask_credentials(problem)}", file=sys.stderr)
        return config.EX_CONFIG
    print(f"{path}: valid boot-partition file (node {node}); [secrets] go to the node at "
          "first boot (an empty one keeps the node's stored value)")
    return 0
