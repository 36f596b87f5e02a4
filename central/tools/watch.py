"""`ronda watch`: a live console of every node under a prefix, from what it hears.

`FleetState.handle(topic, payload)` takes any message under `<prefix>/#`; `rows()`
gives one summary per node (status, health figures, last event, seq gaps); `render`
makes the table. A Command Center tool: `ronda` launches it (firmware/tools.py);
a node's release does not have it.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from central.mqtt_client import add_client_arguments, client_options, connect
from central.tools import formatter, password


@dataclass
class NodeView:
    """One node as seen by the watcher."""

    node: str
    status: str = "?"
    status_ts: float = 0.0
    health: dict[str, Any] = field(default_factory=dict)
    health_ts: float = 0.0
    events: int = 0
    duplicates: int = 0
    gaps: int = 0
    last_seq: int = 0
    last_event: dict[str, Any] = field(default_factory=dict)
    last_event_ts: float = 0.0
    last_reply: dict[str, Any] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set, repr=False)


class FleetState:
    """Thread-safe aggregate of node views."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix.rstrip("/")
        self.nodes: dict[str, NodeView] = {}
        self.lock = threading.Lock()

    def handle(self, topic: str, payload: bytes, now: float | None = None) -> None:
        """Account one message."""
        now = time.time() if now is None else now
        rest = topic[len(self.prefix) + 1:] if topic.startswith(self.prefix + "/") else ""
        parts = rest.split("/")
        if len(parts) < 2 or not parts[0]:
            return
        node, kind = parts[0], "/".join(parts[1:])
        with self.lock:
            view = self.nodes.setdefault(node, NodeView(node))
            if kind == "status":
                view.status, view.status_ts = payload.decode(errors="replace"), now
            elif kind == "health":
                view.health, view.health_ts = _json(payload), now
            elif kind == "events":
                self._event(view, _json(payload), now)
            elif kind == "reply":
                view.last_reply = _json(payload)

    @staticmethod
    def _event(view: NodeView, doc: dict[str, Any], now: float) -> None:
        event_id, seq = doc.get("id"), doc.get("seq")
        if not isinstance(event_id, str):
            return  # not an event of the contract
        if event_id in view.seen_ids:
            view.duplicates += 1
            return
        view.seen_ids.add(event_id)
        view.events += 1
        if isinstance(seq, int):
            if view.last_seq and seq > view.last_seq + 1:
                view.gaps += seq - view.last_seq - 1
            view.last_seq = max(view.last_seq, seq)
        view.last_event, view.last_event_ts = doc, now

    def rows(self) -> list[NodeView]:
        """A copy of every node's view, sorted by node id."""
        with self.lock:
            return [NodeView(**{**v.__dict__, "seen_ids": set()})
                    for _, v in sorted(self.nodes.items())]


def _json(payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch", formatter_class=formatter,
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
        client = connect(client_options(args, password(args)))
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
