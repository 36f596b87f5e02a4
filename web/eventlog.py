"""The page's own event history: a small SQLite table fed from the event bus.

The node keeps no other queryable history (events go to the MQTT outbox, which deletes
them once the broker has them), so the web area keeps the last `max_events` here, in the
node's state directory, snapshots included (each capped at `max_snapshot` bytes).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

FILENAME = "web-events.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS event (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    type TEXT NOT NULL,
    camera TEXT,
    payload TEXT NOT NULL,
    snapshot BLOB
);
CREATE INDEX IF NOT EXISTS event_ts ON event (ts);
"""


class EventLog:
    """Bounded event history; thread-safe."""

    def __init__(self, path: Path, max_events: int = 5000, max_snapshot: int = 200_000) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_snapshot = max_snapshot
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._added = 0

    def add(self, event_id: str, ts: float, kind: str, camera: str | None,
            payload: dict[str, Any], snapshot: bytes | None = None) -> None:
        if snapshot is not None and len(snapshot) > self.max_snapshot:
            snapshot = None
        with self._lock:
            self.db.execute("INSERT OR REPLACE INTO event VALUES (?, ?, ?, ?, ?, ?)",
                            (event_id, ts, kind, camera, json.dumps(payload, default=str),
                             snapshot))
            self._added += 1
            if self._added % 50 == 1:
                self.db.execute("DELETE FROM event WHERE ts < (SELECT ts FROM event ORDER BY ts "
                                "DESC LIMIT 1 OFFSET ?)", (self.max_events - 1,))

    def query(self, *, camera: str | None = None, kind: str | None = None,
              start: float | None = None, end: float | None = None,
              limit: int = 100) -> list[dict[str, Any]]:
        """Newest first. An event with no camera (an alarm) matches every camera."""
        sql = "SELECT id, ts, type, camera, payload, snapshot IS NOT NULL FROM event WHERE 1"
        args: list[Any] = []
        if camera:
            sql += " AND (camera = ? OR camera IS NULL)"
            args.append(camera)
        if kind:
            sql += " AND type = ?"
            args.append(kind)
        if start is not None:
            sql += " AND ts >= ?"
            args.append(start)
        if end is not None:
            sql += " AND ts < ?"
            args.append(end)
        sql += " ORDER BY ts DESC LIMIT ?"
        args.append(max(1, min(limit, 500)))
        with self._lock:
            rows = self.db.execute(sql, args).fetchall()
        return [{"id": r[0], "ts": r[1], "type": r[2], "camera": r[3],
                 "payload": json.loads(r[4]), "snapshot": bool(r[5])} for r in rows]

    def types(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT DISTINCT type FROM event ORDER BY 1")]

    def snapshot(self, event_id: str) -> bytes | None:
        with self._lock:
            row = self.db.execute("SELECT snapshot FROM event WHERE id = ?",
                                  (event_id,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        with self._lock:
            self.db.close()
