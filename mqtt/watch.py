"""What `ronda watch` knows about every node under a prefix, from what it hears.

`FleetState.handle(topic, payload)` takes any message under `<prefix>/#`; `rows()`
gives one summary per node (status, health figures, last event, seq gaps).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any


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
