"""`ronda watch`: a live console of every node under a prefix."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from firmware.commands import formatter
from firmware.config import read_secret
from mqtt.tools import add_client_arguments, client_options, connect
from mqtt.watch import FleetState, NodeView


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch", formatter_class=formatter, help="live console of every node under a prefix",
        description="Subscribe to <prefix>/+/status, health, events and reply and show one\n"
                    "line per node: online/offline, age of its last health report, CPU,\n"
                    "temperature, power flags, storage, cameras, outbox depth and drops,\n"
                    "events seen, seq gaps (lost events) and the last event.\n\n"
                    "examples:\n"
                    "  ronda watch --broker mqtts://cc.example:8883 --ca-file ca.crt\n"
                    "  ronda watch --broker mqtt://127.0.0.1:1883 --once 5   (print, exit)")
    add_client_arguments(p)
    p.add_argument("--once", type=float, metavar="S",
                   help="listen for S seconds, print the table once and exit")
    p.set_defaults(func=watch)


def _age(ts: float, now: float) -> str:
    if not ts:
        return "-"
    seconds = now - ts
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _fmt(value: Any, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}{unit}"
    return str(value)


def render(rows: list[NodeView], prefix: str, now: float | None = None) -> Table:
    """The console table of the fleet."""
    now = time.time() if now is None else now
    table = Table(title=f"Ronda nodes under {prefix} ({len(rows)})", expand=False)
    for col in ("node", "status", "health", "cpu", "temp", "power", "storage", "cameras",
                "outbox", "drops", "events", "gaps", "last event"):
        table.add_column(col, no_wrap=True)
    for v in rows:
        h = v.health
        status = {"online": "[green]online[/]", "offline": "[red]offline[/]"}.get(
            v.status, v.status)
        cams = h.get("cameras") or {}
        cams_ok = sum(1 for c in cams.values() if isinstance(c, dict)
                      and c.get("state") == "online")
        power = "undervolt" if h.get("undervoltage") else (
            "throttled" if h.get("throttling") else ("ok" if h.get("throttled") is not None
                                                       else "-"))
        storage = h.get("storage") or {}
        outbox = h.get("outbox") or {}
        last = v.last_event
        last_text = (f"{last.get('type')} {last.get('camera') or ''} "
                     f"#{last.get('seq')} {_age(v.last_event_ts, now)} ago") if last else "-"
        table.add_row(
            v.node, status, _age(v.health_ts, now), _fmt(h.get("cpu_percent"), "%"),
            _fmt(h.get("temperature_c"), "°C"), power,
            _fmt(storage.get("state") if isinstance(storage, dict) else None),
            f"{cams_ok}/{len(cams)}" if cams else "-", _fmt(outbox.get("depth")),
            _fmt(outbox.get("drops")), str(v.events),
            f"[red]{v.gaps}[/]" if v.gaps else "0", last_text)
    return table


def watch(args: argparse.Namespace) -> int:
    state = FleetState(args.prefix)
    try:
        client = connect(client_options(args, read_secret(args.password_file)))
    except (OSError, ConnectionError) as exc:
        print(f"ronda watch: cannot reach the broker: {exc}", file=sys.stderr)
        return 4
    client.on_message = lambda _c, _u, msg: state.handle(msg.topic, bytes(msg.payload))
    for kind in ("status", "health", "events", "reply"):
        client.subscribe(f"{args.prefix}/+/{kind}", qos=1)
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        if args.once is not None:
            time.sleep(args.once)
            console.print(render(state.rows(), args.prefix))
            return 0
        with Live(render(state.rows(), args.prefix), console=console,
                  refresh_per_second=2) as live:
            while True:
                time.sleep(0.5)
                live.update(render(state.rows(), args.prefix))
    except KeyboardInterrupt:
        return 0
    finally:
        client.disconnect()
        client.loop_stop()
