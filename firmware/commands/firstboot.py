"""`ronda firstboot`: apply ronda.toml from the boot partition (run by ronda-firstboot.service)."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import subprocess
import sys
from pathlib import Path

from firmware.commands import formatter
from firmware.config import EX_CONFIG


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "firstboot", formatter_class=formatter,
        help="apply ronda.toml from the boot partition (hostname, secrets, SSD, Wi-Fi)",
        description=(
            "Validate BOOT/ronda.toml and, only if it is entirely valid, install it as\n"
            "ROOT/etc/ronda/ronda.toml (mode 0600), move [secrets] into\n"
            "ROOT/etc/ronda/secrets/, set the hostname from node.id, the timezone, Wi-Fi\n"
            "and the recordings SSD's fstab line, then blank the secrets on the boot copy.\n"
            "A bad file changes nothing: the problems go to BOOT/ronda-error.txt and the\n"
            "exit code is 78. An unchanged file is skipped (exit 0).\n\n"
            "examples:\n"
            "  ronda firstboot                                  # what systemd runs\n"
            "  ronda firstboot --boot /mnt/boot --root /mnt/root # prepare a mounted card\n"
            "  ronda firstboot --check --boot /media/$USER/bootfs # validate on a laptop\n"
            "  ronda firstboot --force --led-command '/usr/local/bin/led {state}'"),
    )
    p.add_argument("--boot", type=Path, default=Path("/boot/firmware"),
                   help="the boot partition (default: /boot/firmware)")
    p.add_argument("--root", type=Path, default=Path("/"),
                   help="the root filesystem to configure (default: /)")
    p.add_argument("--force", action="store_true", help="apply even if unchanged")
    p.add_argument("--check", action="store_true",
                   help="only validate BOOT/ronda.toml (with its [provision] and [secrets]); "
                        "change nothing")
    p.add_argument("--led-command", default="",
                   help="run this program with {state} = applying|ok|error in its arguments "
                        "(split like a shell would, but no shell runs it)")
    p.add_argument("--status-led", choices=("auto", "on", "off"), default="auto",
                   help="drive the status LED (booting blink, then the config-rejected rhythm "
                        "on error); auto: only on the booted node itself (default: auto)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    words = shlex.split(args.led_command)
    led = None if args.check else _status_led(args)

    def status(state: str) -> None:
        if led is not None:
            led(state)
        if words:  # no shell: the words are a program and its arguments
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run([w.replace("{state}", state) for w in words], check=False,
                               timeout=10)

    try:
        return _run(args, status)
    finally:
        if led is not None:
            led.close()


def _status_led(args: argparse.Namespace):
    """The status LED hook, or None (not wanted, or GPIO unavailable: never fatal)."""
    from firmware.provision.system import booted_here

    if args.status_led == "off" or (args.status_led == "auto" and
                                    not (args.root == Path("/") and booted_here())):
        return None
    from firmware.provision.led import FirstbootLed, status_led_settings

    try:
        return FirstbootLed(status_led_settings(args.boot / "ronda.toml"))
    except Exception as exc:  # a busy pin, no pin factory: first boot goes on without it
        print(f"firstboot: status LED unavailable: {exc}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace, status) -> int:
    from firmware.provision.firstboot import ProvisionError, check, firstboot

    try:
        if args.check:
            node = check(args.boot / "ronda.toml", args.root)
            print(f"{args.boot / 'ronda.toml'}: valid (node {node}); nothing applied")
            return 0
        result = firstboot(args.boot, args.root, status=status, force=args.force)
    except ProvisionError as exc:
        where = "" if args.check else f" (also in {args.boot / 'ronda-error.txt'})"
        print(f"{args.boot / 'ronda.toml'}: NOT applied, {len(exc.problems)} problem(s)"
              f"{where}:", file=sys.stderr)
        from drivers.cameras.base import mask_credentials

        for problem in exc.problems:
            print(f"  {mask_credentials(problem)}", file=sys.stderr)
        return EX_CONFIG
    print(f"firstboot: {result.reason}")
    for change in result.changes:
        print(f"  {change}")
    return 0
