"""`ronda doctor`: check config, cameras, disk, model, GPIO, broker, clock and power."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from firmware.commands import formatter

CHECK_NAMES = ("service", "cameras", "storage", "model", "gpio", "mqtt", "clock", "power")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", formatter_class=formatter,
        help="check that the node can work: cameras, disk, model, GPIO, broker, clock",
        description=(
            "Check everything the node needs, one line per check with a hint for each\n"
            "failure: the config; first boot (BOOT/ronda-error.txt, a failed\n"
            "ronda-firstboot, a boot file edited after the running config was installed);\n"
            "the daemon (safe mode, settings older than the file); ronda.service (systemd:\n"
            "running, restarts); each camera\n"
            "(ffprobe: codec, resolution, fps); the recordings disk (mounted, writable, free\n"
            "space, mount options); the detection model (loads, one inference); GPIO pins\n"
            "(claimable); the MQTT broker (TLS, login, a publish that comes back); the\n"
            "clock (NTP); power (under-voltage, throttling).\n"
            "Stop the daemon first for the GPIO check: it holds the pins.\n\n"
            "exit codes: 0 all passed (warnings allowed), 1 a check failed,\n"
            "            78 the config file is invalid (only first boot and the daemon\n"
            "               are checked then)\n\n"
            "examples:\n"
            "  ronda doctor                          # the installed config\n"
            "  ronda doctor --test-outputs           # also sound the siren/light 0.5 s\n"
            "  ronda doctor --json | jq '.checks[] | select(.status==\"fail\")'\n"
            "  ronda doctor --skip gpio,power -c /tmp/new.toml"),
    )
    p.add_argument("--config", "-c", type=Path, default=Path("/etc/ronda/ronda.toml"),
                   help="config file (default: /etc/ronda/ronda.toml)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--test-outputs", action="store_true",
                   help="pulse the siren and the light for 0.5 s each (people will hear it)")
    p.add_argument("--skip", default="", metavar="NAMES",
                   help=f"comma-separated checks to leave out: {','.join(CHECK_NAMES)}")
    p.add_argument("--boot", type=Path, default=Path("/boot/firmware"),
                   help="the boot partition, for first boot's verdict (default: /boot/firmware)")
    p.add_argument("--health-file", type=Path, default=Path("/run/ronda/health.json"),
                   help="the running daemon's health file (default: /run/ronda/health.json)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/ronda"),
                   help="first boot's state (firstboot.json) (default: /var/lib/ronda)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for each camera and the broker (default: 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from firmware.provision import doctor

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(CHECK_NAMES)
    if unknown:
        print(f"--skip: unknown check(s) {', '.join(sorted(unknown))}; "
              f"known: {', '.join(CHECK_NAMES)}", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        # gpiozero warns on stderr while it tries pin factories; the gpio check says it all
        warnings.simplefilter("ignore")
        checks = doctor.run_checks(args.config, test_outputs=args.test_outputs, skip=skip,
                                   camera_timeout_s=args.timeout, mqtt_timeout_s=args.timeout,
                                   boot=args.boot, health_file=args.health_file,
                                   state_dir=args.state_dir)
    if args.json:
        json.dump(doctor.as_json(checks), sys.stdout, indent=2)
        print()
    else:
        _table(checks)
    return doctor.exit_code(checks)


def _table(checks: list) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    style = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}
    table = Table(title="ronda doctor", show_lines=False)
    for col in ("check", "status", "detail", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        table.add_row(escape(c.name), f"[{style[c.status]}]{c.status.upper()}[/]",
                      escape(c.detail), escape(c.hint))
    console = Console()
    console.print(table)
    failed = [c.name for c in checks if c.failed]
    console.print(f"[bold red]{len(failed)} failed: {escape(', '.join(failed))}[/]" if failed
                  else "[green]all checks passed[/]")
