"""`ronda run`: the daemon."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from firmware.commands import formatter, load_config_or_exit

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", formatter_class=formatter, help="run the node daemon",
        description="Run the node: cameras, recorder, detection, alarm and MQTT, as\n"
                    "configured. Under systemd it reports READY/WATCHDOG/STOPPING.\n"
                    "SIGTERM or Ctrl-C stops it within 5 s, outputs off.\n\n"
                    "A config that is missing or invalid is reported field by field and the\n"
                    "node runs in SAFE MODE: the panic button, siren, light and status LED work\n"
                    "(with the file's own [gpio]/[alarm] if valid, else the last good ones, else\n"
                    "the standard panel pins); cameras, recorder and detection stay off; health\n"
                    "and `ronda doctor` say \"config rejected: <field>: <reason>\".\n\n"
                    "example:\n  ronda run --config /etc/ronda/ronda.toml",
    )
    p.add_argument("--config", "-c", default="/etc/ronda/ronda.toml",
                   help="config file (default: /etc/ronda/ronda.toml)")
    p.add_argument("--strict", action="store_true",
                   help="exit 78 on a bad config instead of running in safe mode")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware import config
    from firmware.fallback import DEFAULT_DATA_DIR, boot_rejection, safe_config

    if args.strict:
        cfg = load_config_or_exit(args.config)
        rejected = boot_rejection(cfg.node.data_dir)
    else:
        try:
            cfg = config.load(args.config)
            rejected = boot_rejection(cfg.node.data_dir)  # running the previous settings
        except config.ConfigError as exc:
            for problem in exc.problems:
                print(f"{exc.source}: {problem}", file=sys.stderr)
            cfg, rejected = safe_config(args.config, exc, boot_rejection(DEFAULT_DATA_DIR))
    from firmware.daemon import Daemon

    daemon = Daemon(cfg, rejected=rejected)

    def _stop(signum: int, _frame: object) -> None:
        log.info("got %s", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return daemon.run()
