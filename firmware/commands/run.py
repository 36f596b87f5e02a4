"""`ronda run`: the daemon."""

from __future__ import annotations

import argparse
import logging
import signal

from firmware.commands import formatter, load_config_or_exit

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", formatter_class=formatter, help="run the node daemon",
        description="Run the node: cameras, recorder, detection, alarm and MQTT, as\n"
                    "configured. Under systemd it reports READY/WATCHDOG/STOPPING.\n"
                    "SIGTERM or Ctrl-C stops it within 5 s, outputs off.\n\n"
                    "example:\n  ronda run --config /etc/ronda/ronda.toml",
    )
    p.add_argument("--config", "-c", default="/etc/ronda/ronda.toml",
                   help="config file (default: /etc/ronda/ronda.toml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit(args.config)
    from firmware.daemon import Daemon

    daemon = Daemon(cfg)

    def _stop(signum: int, _frame: object) -> None:
        log.info("got %s", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return daemon.run()
