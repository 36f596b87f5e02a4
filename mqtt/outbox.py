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
import contextlib
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

from support.sqlite import NewerSchema, check_version, migrate

log = logging.getLogger(__name__)

#: Schema steps (support/sqlite.py): MIGRATIONS[n] takes a database from
#: ``PRAGMA user_version`` n to n + 1, each in its own transaction.
MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema. `IF NOT EXISTS`: outboxes written before the schema had a
    # version (user_version 0, same tables) are adopted as they are.
    """
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
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
ALARM_PRIORITY = 2  # firmware.events.Priority.HIGH: panic, fire


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
                 max_bytes: int = 64 * 1024 * 1024, open_retries: int = 3) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.recovered_from: Path | None = None
        self.recoveries = 0  # damaged databases moved aside by this process
        self.degraded = ""  # why events are kept in memory only ("" when on disk)
        self._count = self._bytes = 0
        self._last_seq = 0  # the highest seq this process assigned
        self._db = self._open_robustly(open_retries)

    def _open_robustly(self, retries: int) -> sqlite3.Connection:
        """The database on disk, whatever state it is in; never raises.

        Corruption (SQLITE_CORRUPT / SQLITE_NOTADB, found by the schema check or by the
        totals query, which reads every table page) moves the files aside and starts a
        fresh database, continuing `seq` from the damaged one when it can still be read.
        Anything else (I/O error, locked, read-only or missing directory) is retried, then
        the outbox degrades to memory: events are still kept and published, but do not
        survive a restart; `degraded` says why (in health).
        """
        error: Exception | None = None
        for attempt in range(max(1, retries)):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                return self._open(self.path)
            except NewerSchema as exc:  # keep the file (and its events) for newer firmware
                error = exc
                break
            except sqlite3.DatabaseError as exc:
                error = exc
                if is_corruption(exc):
                    fresh = self._recover(exc)
                    if fresh is not None:
                        return fresh
                    break
                log.warning("outbox %s: cannot open (%s), attempt %d", self.path, exc,
                            attempt + 1)
            except (sqlite3.Error, OSError) as exc:
                error = exc
                log.warning("outbox %s: cannot open (%s), attempt %d", self.path, exc,
                            attempt + 1)
            if attempt + 1 < retries:
                time.sleep(0.2 * (attempt + 1))
        self.degraded = f"outbox not on disk ({error}); events kept in memory only"
        log.error("outbox %s: %s", self.path, self.degraded)
        return self._open(":memory:")

    def _recover(self, exc: Exception) -> sqlite3.Connection | None:
        """Move a damaged database aside and open a fresh one (None if that fails too)."""
        seq, drops = _salvage_meta(self.path)
        seq = max(seq, self._last_seq)  # never below what this process handed out
        target = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.error("outbox %s damaged (%s); moved to %s, starting empty at seq %d",
                  self.path, exc, target, seq + 1)
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(f"{self.path}{suffix}")
                if src.exists():
                    src.rename(f"{target}{suffix}")
            db = self._open(self.path)
            with db:
                db.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (seq,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('drops', ?)", (drops,))
                db.execute("INSERT INTO meta VALUES ('recoveries', 1) ON CONFLICT(key) "
                           "DO UPDATE SET value = value + 1")
        except (sqlite3.Error, OSError) as again:
            log.error("outbox %s: recovery failed: %s", self.path, again)
            return None
        self.recovered_from = target
        self.recoveries += 1
        return db

    def fall_back(self, exc: Exception) -> bool:
        """After a write failed with `exc` while running: True if the outbox could move
        somewhere a retry may succeed. A damaged file is moved aside for a fresh one (as at
        open); a full, read-only or failing disk makes the outbox continue in memory, with
        what it held copied over (events then survive no restart; `degraded` says so in
        health; the next start tries the disk again). False when there is nothing to do
        (already in memory, or not a disk problem)."""
        if self.degraded or not isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) \
                or isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
            return False
        with self._lock:
            old = self._db
            if is_corruption(exc):
                with contextlib.suppress(sqlite3.Error):
                    old.close()
                fresh = self._recover(exc)
                if fresh is not None:
                    self._db = fresh
                    return True
                mem = self._open(":memory:")
            else:
                mem = sqlite3.connect(":memory:", check_same_thread=False,
                                      isolation_level=None)
                try:
                    if old.in_transaction:
                        old.execute("ROLLBACK")
                    old.backup(mem)  # reading still works on a full or read-only disk
                except sqlite3.Error as copy_exc:
                    log.error("outbox: stored events could not be copied to memory: %s",
                              copy_exc)
                    mem.close()
                    seq = 0
                    with contextlib.suppress(sqlite3.Error):
                        seq = self._meta("seq")
                    mem = self._open(":memory:")
                    mem.execute("INSERT OR REPLACE INTO meta VALUES ('seq', ?)", (seq,))
                with contextlib.suppress(sqlite3.Error):
                    old.close()
            self._db = mem
            self.degraded = (f"outbox write failed ({exc}); events kept in memory only "
                             "until the next start")
            log.error("outbox %s: %s", self.path, self.degraded)
            with contextlib.suppress(sqlite3.Error):
                self._reload_totals()
            return True

    def _open(self, where: Path | str) -> sqlite3.Connection:
        db = sqlite3.connect(where, check_same_thread=False, isolation_level=None)
        try:
            check_version(db, MIGRATIONS)  # before anything writes to a newer firmware's file
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            migrate(db, MIGRATIONS)
            row = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
            db.execute("SELECT key, value FROM meta").fetchall()
        except BaseException:
            db.close()
            raise
        self._count, self._bytes = int(row[0]), int(row[1])
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
                self._last_seq = seq
            except BaseException:
                self._abort()  # the original error goes on, not one from the rollback
                raise
            return seqs

    def _make_room(self, size: int, priority: int) -> int:
        """Make `size` more bytes and one more event fit, deleting the oldest events of the
        lowest priority (never above `priority`); returns how many went (each counted as a
        drop), or -1 when even all of them would not do: then nothing is deleted."""
        need_count = self._count + 1 - self.max_events
        need_bytes = self._bytes + size - self.max_bytes
        if need_count <= 0 and need_bytes <= 0:
            return 0
        if size > self.max_bytes:
            return -1
        victims: list[int] = []
        freed_count = freed_bytes = 0
        cursor = self._db.execute("SELECT seq, size FROM outbox WHERE priority <= ? "
                                  "ORDER BY priority, seq", (int(priority),))
        try:
            while freed_count < need_count or freed_bytes < need_bytes:
                row = cursor.fetchone()
                if row is None:
                    return -1  # even all of them would not make room: delete nothing
                victims.append(row[0])
                freed_count += 1
                freed_bytes += row[1]
        finally:
            cursor.close()
        for start in range(0, len(victims), 500):
            chunk = victims[start:start + 500]
            self._db.execute(f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))})",
                             chunk)
        self._count -= freed_count
        self._bytes -= freed_bytes
        self._set_meta("drops", self._meta("drops") + len(victims))
        return len(victims)

    def remove(self, seqs: list[int]) -> None:
        """Forget acknowledged events (once more after `fall_back` if the disk refuses)."""
        try:
            self._remove(seqs)
        except sqlite3.Error as exc:
            if not self.fall_back(exc):
                raise
            self._remove(seqs)

    def _remove(self, seqs: list[int]) -> None:
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
                self._abort()
                raise
            finally:
                try:
                    self._db.execute("PRAGMA synchronous=FULL")
                except sqlite3.Error as exc:
                    log.error("outbox: cannot restore synchronous=FULL: %s", exc)

    # -- reading ------------------------------------------------------------------------
    def pending(self, after: int = 0, limit: int = 100) -> list[Item]:
        """Stored events with seq > `after`, oldest first. Damage found here moves the
        file aside (`fall_back`) rather than failing every read of the link for ever."""
        query = ("SELECT seq, id, priority, created, payload, snapshot FROM outbox "
                 "WHERE seq > ? ORDER BY seq LIMIT ?")
        try:
            with self._lock:
                rows = self._db.execute(query, (after, limit)).fetchall()
        except sqlite3.DatabaseError as exc:
            if not (is_corruption(exc) and self.fall_back(exc)):
                raise
            with self._lock:
                rows = self._db.execute(query, (after, limit)).fetchall()
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
                "max_bytes": self.max_bytes, "storage": "memory" if self.degraded else "disk",
                "recoveries": self.recoveries,
                "oldest_age_s": None if oldest is None else round(time.time() - oldest, 1)}

    # -- command ids (replay protection over restarts) -----------------------------------
    def remember_command(self, cmd_id: str, ts: float,
                         expire_before: float | None = None) -> None:
        """Keep a verified command id (durably) so a replay after a restart is refused;
        ids with ts < `expire_before` are forgotten in the same transaction. Raises
        sqlite3.Error when the disk refuses (the caller keeps the id in memory)."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if expire_before is not None:
                    db.execute("DELETE FROM seen_commands WHERE ts < ?", (expire_before,))
                db.execute("INSERT OR REPLACE INTO seen_commands VALUES (?, ?)", (cmd_id, ts))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def seen_commands(self, since: float) -> list[tuple[str, float]]:
        """Remembered command ids with ts >= `since`; older ones are deleted. Never
        raises: a damaged or read-only table only loses the memory of old ids (logged)."""
        with self._lock:
            try:
                self._db.execute("DELETE FROM seen_commands WHERE ts < ?", (since,))
            except sqlite3.Error as exc:
                log.warning("outbox: cannot expire old command ids: %s", exc)
            try:
                return [(str(i), float(t)) for i, t in self._db.execute(
                    "SELECT id, ts FROM seen_commands WHERE ts >= ?", (since,))]
            except sqlite3.Error as exc:
                log.error("outbox: remembered command ids unreadable (%s); "
                          "replays of commands from before this start are not refused", exc)
                return []

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- internals ---------------------------------------------------------------------
    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _abort(self) -> None:
        """After a failed transaction: roll back if SQLite has not already (it does so
        itself on SQLITE_FULL, I/O errors...), and recount from what is really stored."""
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("outbox: rollback failed: %s", exc)
        try:
            self._reload_totals()
        except sqlite3.Error as exc:
            log.error("outbox: cannot recount after a failed write: %s", exc)

    def _reload_totals(self) -> None:
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])


CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes)
CORRUPTION_TEXT = ("malformed", "not a database", "corrupt")


def is_corruption(exc: BaseException) -> bool:
    """Whether `exc` says the database file is damaged (and not, say, busy, locked, full,
    read-only or an I/O error that may pass): only then is it moved aside."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if isinstance(code, int):
        return code & 0xFF in CORRUPTION_CODES
    text = str(exc).lower()  # Python 3.10: only the message tells
    return isinstance(exc, sqlite3.DatabaseError) and any(t in text for t in CORRUPTION_TEXT)


def _salvage_meta(path: Path) -> tuple[int, int]:
    """(seq, drops) from a damaged outbox when still readable, so `seq` does not restart."""
    seq = drops = 0
    try:
        db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0, 0
    try:
        for key, value in db.execute("SELECT key, value FROM meta"):
            if key == "seq":
                seq = int(value)
            elif key == "drops":
                drops = int(value)
        with contextlib.suppress(sqlite3.Error):
            seq = max(seq, int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox")
                               .fetchone()[0]))
    except (sqlite3.Error, ValueError, TypeError):
        pass
    finally:
        db.close()
    return seq, drops


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
    every event waiting at that moment in one transaction (one fsync).

    So an event submitted while a transaction is under way is durable when the *next* one
    commits: the window a kill -9 can hit is one batch, whatever the burst (up to
    `max_batch` events waiting); an alarm is durable one batch after its press. Events keep
    their order (`seq` follows submission). With one fsync per event a burst of detections
    would queue a panic behind N disk flushes; batched, it waits for at most one. `flush()`
    writes what was submitted so far from the calling thread (used at exit). `on_alarm()`
    is called after a batch holding an alarm (priority >= `ALARM_PRIORITY`) commits.
    """

    def __init__(self, outbox: Outbox, on_stored: Callable[[int], None] = lambda n: None,
                 on_error: Callable[[Exception, int], None] = lambda exc, n: None,
                 max_batch: int = 10_000,
                 on_alarm: Callable[[], None] = lambda: None) -> None:
        self.outbox = outbox
        self.on_stored = on_stored
        self.on_error = on_error
        self.on_alarm = on_alarm
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
            alarms = any(e[1] >= ALARM_PRIORITY for e in batch)
            try:
                try:
                    self.outbox.put_many(batch)
                except sqlite3.Error as exc:  # disk full, read-only, damaged: move, retry
                    if not self.outbox.fall_back(exc):
                        raise
                    self.outbox.put_many(batch)
            except sqlite3.Error as exc:  # still failing: reported, dropped
                self.on_error(exc, len(batch))
                return True
            self.batches += 1
            self.on_stored(len(batch))
            if alarms:
                self.on_alarm()
            return True
