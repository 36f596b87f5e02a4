"""`ronda update`: install a new release beside the running one; roll back if unhealthy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from firmware.commands import formatter
from firmware.config import EX_CONFIG

EX_ROLLED_BACK = 1
EX_DOWN = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "update", formatter_class=formatter,
        help="install a ronda wheel as a new release; switch back if it is not healthy",
        description=(
            "Install FILE.whl into /opt/ronda/<version> (a new venv; the running release is\n"
            "not touched), check that it runs and accepts the node's config, point\n"
            "/opt/ronda/current at it, restart ronda.service and wait until it is READY and\n"
            "has stayed up for --settle seconds (longer than the 30 s watchdog). If not,\n"
            "`current` goes back to the old release, which is restarted.\n\n"
            "Without --offline, pip fetches the dependencies from the package index: that\n"
            "needs the internet. A post without it: --offline --wheelhouse DIR (a USB stick\n"
            "with the dependency wheels). Each step is printed as it happens; a release that\n"
            "fails its health check is kept for `--activate` until the next good update,\n"
            "then deleted (each is ~300 MB).\n\n"
            "exit codes: 0 updated; 1 the new release failed and the old one runs again\n"
            "            (or the arguments were refused: nothing was touched);\n"
            "            2 the rollback failed too (the node is down: call for help);\n"
            "            78 the new release rejects the config (nothing was switched)\n\n"
            "examples:\n"
            "  ronda update /tmp/ronda-0.2.0-py3-none-any.whl\n"
            "  ronda update ronda-0.2.0-py3-none-any.whl --wheelhouse /media/usb/wheels --offline\n"
            "  ronda update --rollback          # back to the previous release\n"
            "  ronda update --list"),
    )
    p.add_argument("wheel", nargs="?", type=Path, help="the ronda-VERSION-*.whl to install")
    p.add_argument("--rollback", action="store_true",
                   help="switch to the previous release (same health checks)")
    p.add_argument("--activate", metavar="VERSION", help="switch to an installed release")
    p.add_argument("--list", action="store_true", help="list installed releases")
    p.add_argument("--prefix", type=Path, default=Path("/opt/ronda"),
                   help="where releases live (default: /opt/ronda)")
    p.add_argument("--unit", default="ronda", help="systemd unit (default: ronda)")
    p.add_argument("--config", type=Path, default=Path("/etc/ronda/ronda.toml"),
                   help="the node's config, checked with the new release first")
    p.add_argument("--wheelhouse", type=Path, help="extra directory of dependency wheels")
    p.add_argument("--offline", action="store_true",
                   help="install only from the wheel's directory and --wheelhouse")
    p.add_argument("--extras", default=None,
                   help="extras to install, e.g. 'pi,detect' (default: as the current release)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds for the new release to become READY (default: 120)")
    p.add_argument("--settle", type=float, default=40.0,
                   help="seconds it must then stay up (default: 40)")
    p.add_argument("--health-file", type=Path, default=Path("/run/ronda/health.json"),
                   help="health report that must name the new version, when the daemon "
                        "writes one (default: /run/ronda/health.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from firmware.provision.services import SystemdManager
    from firmware.provision.update import MARKER, HealthGate, Releases, UpdateError, update

    releases = Releases(args.prefix)
    if args.list:
        for version in releases.installed():
            mark = ("* current" if version == releases.current else
                    "  previous" if version == releases.previous else "")
            failed = " (failed health check)" if (releases.path(version) / ".failed.json"
                                                  ).exists() else ""
            print(f"{version:<16}{mark}{failed}")
        return 0
    version = args.activate or (releases.previous if args.rollback else None)

    def say(line: str) -> None:
        print(f"  {line}", flush=True)

    if args.wheel is None and version is None:
        print("ronda update: give a wheel, --activate VERSION or --rollback "
              "(no previous release recorded)" if args.rollback else
              "ronda update: give a wheel, --activate VERSION or --rollback", file=sys.stderr)
        return 2
    extras = args.extras
    if extras is None and releases.current:
        try:
            extras = json.loads((releases.path(releases.current) / MARKER).read_text()
                                ).get("extras", "")
        except (OSError, ValueError):
            extras = ""
    gate = HealthGate(args.timeout, args.settle, args.health_file)
    install = {"wheelhouse": args.wheelhouse, "offline": args.offline, "extras": extras or ""}
    if args.wheel and not args.offline:
        print("ronda update: the dependencies come from the package index: this needs the "
              "internet (without it: --offline --wheelhouse DIR)", flush=True)
    try:
        result = update(args.wheel, prefix=args.prefix, manager=SystemdManager(),
                        unit=args.unit, config=args.config, gate=gate,
                        version=None if args.wheel else version, progress=say,
                        **(install if args.wheel else {}))
    except UpdateError as exc:
        print(f"ronda update: {exc}", file=sys.stderr)
        if exc.switched:
            print(f"what the daemon said: journalctl -u {args.unit} -b -n 80", file=sys.stderr)
        record_outcome(args, version, str(exc), "rolled_back" if exc.rolled_back
                       else "down", exc.switched)
        if exc.config_rejected:
            return EX_CONFIG
        return EX_ROLLED_BACK if exc.rolled_back else EX_DOWN
    record_outcome(args, result.version, "", "updated", True, result.previous)
    print(f"ronda {result.version} is running (was {result.previous}); "
          f"took {result.seconds:.0f} s")
    return 0


def record_outcome(args: argparse.Namespace, version: str | None, reason: str, state: str,
                   switched: bool, previous: str | None = None) -> None:
    """For the daemon to publish as an `update` event (only when something was switched)."""
    if not switched:
        return
    from firmware import config
    from firmware.provision import update

    try:
        data_dir = config.load(args.config).node.data_dir
    except config.ConfigError:
        data_dir = Path("/var/lib/ronda")
    if data_dir.is_dir():
        try:
            update.record_outcome(data_dir, state, version, previous, reason)
        except OSError as exc:
            print(f"ronda update: cannot record the outcome for the daemon: {exc}",
                  file=sys.stderr)
