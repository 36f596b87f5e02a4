"""`ronda demo`: a whole node on this machine, no hardware and no config needed.

A development tool (`devtools/demo.py`); a node's release does not have it."""

from __future__ import annotations

import argparse

from firmware.commands import formatter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", formatter_class=formatter,
        description="Start a Mosquitto broker on a free loopback port, a synthetic RTSP camera\n"
                    "(a street with a person walking across), and a node recording and\n"
                    "watching it; print what the node publishes. Ctrl-C stops everything.\n\n"
                    "example:\n  ronda demo\n  ronda demo --seconds 60 --workdir /tmp/ronda-demo",
    )
    p.add_argument("--seconds", type=float, default=0,
                   help="stop by itself after this many seconds (default: run until Ctrl-C)")
    p.add_argument("--workdir", help="keep recordings and state here (default: a temp dir)")
    p.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from devtools.demo import Demo  # the parser alone (for --help) needs none of it

    return Demo(seconds=args.seconds, workdir=args.workdir).run()
