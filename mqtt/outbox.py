"""The durable outbox: events survive broker outages, daemon crashes and power cuts.

Every event is written to SQLite (WAL, `synchronous=FULL`: the commit is on disk when
`put` returns) before anything tries to publish it, and is deleted only when the broker
acknowledged it (PUBACK). The per-node `seq` is assigned in the same transaction, so it
never repeats or goes backwards, even over a restart.

The outbox is bounded by count and bytes. When a new event would exceed a bound, the
oldest events of the lowest priority go first (priority 0 before 1 before 2), so a
panic is dropped only when the outbox holds nothing but alarms. Drops are counted
and persisted.

Example::

    box = Outbox(path, max_events=10_000, max_bytes=50_000_000)
    seq = box.put("e1", priority=2, payload={"type": "panic"}, snapshot=None)
    for item in box.pending(limit=100):
        ...publish item.payload, then on PUBACK: box.remove([item.seq])
"""

from __future__ import annotations

import collections
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    priority INTEGER NOT NULL,
    created REAL NOT NULL,
    payload TEXT NOT NULL,
    snapshot BLOB,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_drop_order ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen_commands (id TEXT PRIMARY KEY, ts REAL NOT NULL);
"""


@dataclass(frozen=True)
class Item:
    """One event waiting for its PUBACK. `payload` already carries `seq`."""

    seq: int
    id: str
    priority: int
    created: float
    payload: bytes
    snapshot: bytes | None


class Outbox:
    """SQLite-backed FIFO of events with a per-node sequence number. Thread-safe."""

    def __init__(self, path: Path, *, max_events: int = 20000,
                 max_bytes: int = 64 * 1024 * 1024) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.recovered_from: Path | None = None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:  # not a database / malformed: keep it, start anew
            self.recovered_from = self.path.with_name(
                f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("outbox %s unreadable (%s); moved to %s, starting empty",
                      self.path, exc, self.recovered_from)
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(f"{self.recovered_from}{suffix}")
            self._db = self._open()
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
            db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    # -- writing -------------------------------------------------------------------------
    def put(self, event_id: str, priority: int, payload: dict[str, Any],
            snapshot: bytes | None = None) -> int:
        """Store one event durably; returns its `seq` (also set in the stored payload)."""
        return self.put_many([(event_id, priority, payload, snapshot)])[0]

    def put_many(self, events: list[tuple[str, int, dict[str, Any], bytes | None]]) -> list[int]:
        """Store events durably in one transaction (one fsync: group commit), in order.

        Each is (id, priority, payload, snapshot); returns their `seq`s.
        """
        seqs: list[int] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._meta("seq")
                drops = 0
                for event_id, priority, payload, snapshot in events:
                    seq += 1
                    seqs.append(seq)
                    body = json.dumps(clean_json({**payload, "seq": seq}),
                                      separators=(",", ":"), allow_nan=False).encode()
                    size = len(body) + len(snapshot or b"")
                    if self._make_room(size, priority) < 0:  # nothing lower to drop: this goes
                        drops += 1
                        continue
                    db.execute("INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (seq, event_id, int(priority), time.time(), body, snapshot, size))
                    self._count += 1
                    self._bytes += size
                self._set_meta("seq", seq)
                if drops:
                    self._set_meta("drops", self._meta("drops") + drops)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                self._reload_totals()
                raise
            return seqs

    def _make_room(self, size: int, priority: int) -> int:
        """Delete the oldest of the lowest priority until `size` more fits; -1 if it can't."""
        dropped = 0
        while self._count + 1 > self.max_events or self._bytes + size > self.max_bytes:
            row = self._db.execute(
                "SELECT seq, size, priority FROM outbox ORDER BY priority, seq LIMIT 1").fetchone()
            if row is None or row[2] > priority or size > self.max_bytes:
                return -1
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (row[0],))
            self._count -= 1
            self._bytes -= row[1]
            dropped += 1
        if dropped:
            self._set_meta("drops", self._meta("drops") + dropped)
        return dropped

    def remove(self, seqs: list[int]) -> None:
        """Forget acknowledged events."""
        if not seqs:
            return
        with self._lock:
            # A delete lost in a power cut only means a duplicate later (same id and seq),
            # which receivers handle anyway: no fsync for it (WAL + NORMAL).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                count = size = 0
                for start in range(0, len(seqs), 500):  # old SQLite: at most 999 variables
                    chunk = seqs[start:start + 500]
                    marks = ",".join("?" * len(chunk))
                    n, b = self._db.execute(
                        "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox "
                        f"WHERE seq IN ({marks})", chunk).fetchone()
                    self._db.execute(f"DELETE FROM outbox WHERE seq IN ({marks})", chunk)
                    count, size = count + n, size + b
                self._db.execute("COMMIT")
                self._count -= count
                self._bytes -= size
            except BaseException:
                self._db.execute("ROLLBACK")
                self._reload_totals()
                raise
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    # -- reading ------------------------------------------------------------------------
    def pending(self, after: int = 0, limit: int = 100) -> list[Item]:
        """Stored events with seq > `after`, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, id, priority, created, payload, snapshot FROM outbox "
                "WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        return [Item(r[0], r[1], r[2], r[3], bytes(r[4]) if not isinstance(r[4], bytes)
                     else r[4], r[5]) for r in rows]

    def depth(self) -> int:
        return self._count

    def size_bytes(self) -> int:
        return self._bytes

    def drops(self) -> int:
        with self._lock:
            return self._meta("drops")

    def last_seq(self) -> int:
        with self._lock:
            return self._meta("seq")

    def oldest_created(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT created FROM outbox ORDER BY seq LIMIT 1").fetchone()
        return row[0] if row else None

    def stats(self) -> dict[str, Any]:
        """Figures for the health report."""
        oldest = self.oldest_created()
        return {"depth": self._count, "bytes": self._bytes, "drops": self.drops(),
                "last_seq": self.last_seq(), "max_events": self.max_events,
                "max_bytes": self.max_bytes,
                "oldest_age_s": None if oldest is None else round(time.time() - oldest, 1)}

    # -- command ids (replay protection over restarts) -----------------------------------
    def remember_command(self, cmd_id: str, ts: float) -> None:
        """Keep a verified command id (durably) so a replay after a restart is refused."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO seen_commands VALUES (?, ?)", (cmd_id, ts))

    def seen_commands(self, since: float) -> list[tuple[str, float]]:
        """Remembered command ids with ts >= `since`; older ones are deleted."""
        with self._lock:
            self._db.execute("DELETE FROM seen_commands WHERE ts < ?", (since,))
            return list(self._db.execute("SELECT id, ts FROM seen_commands"))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals ---------------------------------------------------------------------
    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _reload_totals(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])


def clean_json(value: Any) -> Any:
    """`value` made strictly JSON: tuples/sets to lists, NumPy scalars and arrays to
    Python numbers and lists, NaN/Infinity to null, bytes to null, dates to ISO text."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [clean_json(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return None
    if hasattr(value, "tolist"):  # NumPy scalar or array
        return clean_json(value.tolist())
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


class OutboxWriter:
    """Group commit: events submitted from any thread are written by one writer thread,
    as many per transaction (one fsync) as are waiting.

    With one fsync per event, a burst of detections would queue a panic behind N disk
    flushes; batched, the panic waits for at most one. `flush()` writes what was
    submitted so far from the calling thread (used at exit).
    """

    def __init__(self, outbox: Outbox, on_stored: Callable[[int], None] = lambda n: None,
                 on_error: Callable[[Exception, int], None] = lambda exc, n: None,
                 max_batch: int = 256) -> None:
        self.outbox = outbox
        self.on_stored = on_stored
        self.on_error = on_error
        self.max_batch = max_batch
        self._queue: collections.deque[tuple[str, int, dict[str, Any], bytes | None]] = \
            collections.deque()
        self._cond = threading.Condition()
        self._write_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0

    def submit(self, event_id: str, priority: int, payload: dict[str, Any],
               snapshot: bytes | None) -> None:
        """Queue one event for the writer thread; never blocks on the disk."""
        with self._cond:
            self._queue.append((event_id, priority, payload, snapshot))
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="mqtt-outbox-writer",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def backlog(self) -> int:
        """Events submitted and not yet written."""
        return len(self._queue)

    def flush(self) -> None:
        """Write everything submitted so far, from the calling thread."""
        while self._write_some():
            pass

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
            self._write_some()

    def _write_some(self) -> bool:
        with self._write_lock:
            with self._cond:
                batch = [self._queue.popleft()
                         for _ in range(min(self.max_batch, len(self._queue)))]
            if not batch:
                return False
            try:
                self.outbox.put_many(batch)
            except sqlite3.Error as exc:  # disk full, read-only, corrupt: reported, dropped
                self.on_error(exc, len(batch))
                return True
            self.batches += 1
            self.on_stored(len(batch))
            return True
