"""`ronda`: the node's command line.

Each module in `firmware/commands/` adds its sub-commands through `register(subparsers)`
and sets `func(args) -> int` on them; this module only finds and dispatches them.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from firmware import __version__, commands, logs

DESCRIPTION = """\
Ronda: NVR firmware for neighbourhood (RW) watch posts.

The node records its cameras into a ring buffer, detects people and vehicles, reports
to the city's MQTT broker and sounds the siren when the panic button is pressed.
"""

EPILOG = """\
examples:
  ronda check-config /etc/ronda/ronda.toml   validate a config file (exit 78 if bad)
  ronda run --config /etc/ronda/ronda.toml   run the node (what systemd starts)
  ronda demo                                 see a node at work, no hardware needed
                                             (a source checkout: not on a node)
  ronda users add sari --role operator       let someone log in to the web page

Run `ronda COMMAND --help` for the details of a command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ronda", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"ronda {__version__}")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="how much to log (default: info)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"firmware.commands.{info.name}").register(sub)
    return parser


def _subparser(parser: argparse.ArgumentParser, command: str | None
               ) -> argparse.ArgumentParser:
    """The parser of `command` (its usage is what a mistyped option should show)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command]
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # shown with the sub-command's usage, not the top-level one
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    logs.setup(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a user sees one line, never a traceback
        if args.log_level == "debug":
            raise
        print(f"ronda {args.command}: error: {type(exc).__name__}: {exc}\n"
              f"(run `ronda --log-level debug {args.command} ...` to see where)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
