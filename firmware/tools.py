"""`ronda` commands that a node does not run: launchers for the Command Center's tools and
the development tools, which live outside `firmware/` and are left out of a node's release.

`ronda cmd`, `ronda watch` (`central/tools/`), `ronda demo`, `ronda fleet-sim` and
`ronda dev-node` (`devtools/commands/`) keep their names, arguments, output and exit
codes. `firmware/commands/<name>.py` only holds `register = launcher("<command>")`: a
placeholder sub-command that takes every argument as is; when it runs, it imports the
tool's module and lets the tool's own parser read them. So:

- `firmware` never imports `central` or `devtools` at import time, and a node's
  production commands (`ronda run`, `doctor`, `firstboot`, `update`, ...) never load
  them, even where they are installed;
- on a node, whose wheel has neither package (`RONDA_WHEEL=node`, setup.py), the command
  says in one line what it is and where to get it, and exits `EXIT_UNAVAILABLE`; it is
  not listed in `ronda --help` there.

`TOOLS` is the one place where `firmware` names those packages
(tests/foundation/test_foundation_layering.py allows exactly these modules).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

# What argparse exits with for a command it does not know: on a node, these are
# commands it does not have.
EXIT_UNAVAILABLE = 2

COMMAND_CENTER = ("a Command Center tool, left out of a node's release: run it on an "
                  "operator's machine with the full ronda package (`pip install .` of the "
                  "source)")
DEVELOPMENT = ("a development tool, left out of a node's release: run it from a source "
               "checkout of ronda (`pip install -e '.[dev]'`)")


@dataclass(frozen=True)
class Tool:
    """One launched command: its name, the module whose `register(sub)` defines it, its
    line in `ronda --help`, and what it is (for the message where it is missing)."""

    command: str
    module: str
    help: str
    kind: str

    @property
    def package(self) -> str:
        return self.module.split(".")[0]


TOOLS = (
    Tool("cmd", "central.tools.cmd",
         "send a signed command to a node and wait for its reply", COMMAND_CENTER),
    Tool("demo", "devtools.commands.demo",
         "run a node with a synthetic camera and a local broker", DEVELOPMENT),
    Tool("dev-node", "devtools.commands.devnode",
         "(development) run the node with synthetic events (stdin or --events)", DEVELOPMENT),
    Tool("fleet-sim", "devtools.commands.fleet",
         "simulate N nodes on a broker; check every event arrives once, in seq", DEVELOPMENT),
    Tool("watch", "central.tools.watch",
         "live console of every node under a prefix", COMMAND_CENTER),
)


def installed(tool: Tool) -> bool:
    """Whether the tool's package is here (looked up, not imported)."""
    return importlib.util.find_spec(tool.package) is not None


def launcher(command: str) -> Callable[[argparse._SubParsersAction], None]:
    """The `register(sub)` of a `firmware/commands/` module that launches `command`."""
    tool = next(t for t in TOOLS if t.command == command)

    def register(sub: argparse._SubParsersAction) -> None:
        # listed in `ronda --help` only where it can run; without `help=` argparse keeps
        # the command out of the list (help=SUPPRESS would print "==SUPPRESS==")
        listed = {"help": tool.help} if installed(tool) else {}
        # prefix_chars="\0": every argument, --help included, is left for the tool's parser
        p = sub.add_parser(tool.command, add_help=False, prefix_chars="\0", **listed)
        p.add_argument("tool_argv", nargs=argparse.REMAINDER)
        p.set_defaults(func=partial(launch, tool))

    return register


def launch(tool: Tool, args: argparse.Namespace) -> int:
    """Import the tool, parse its arguments with its own parser, run it."""
    try:
        module = importlib.import_module(tool.module)
    except ModuleNotFoundError as exc:
        if not exc.name or not f"{tool.module}.".startswith(f"{exc.name}."):
            raise  # the tool is here but a dependency of it is not: say which
        print(f"ronda {tool.command}: not installed here: {tool.kind}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    parser = argparse.ArgumentParser(prog="ronda")
    module.register(parser.add_subparsers())
    tool_args = parser.parse_args([tool.command, *args.tool_argv])
    tool_args.log_level = args.log_level
    return int(tool_args.func(tool_args) or 0)
