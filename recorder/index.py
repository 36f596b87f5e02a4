"""The SQLite index of the recordings store: one row per segment file, garbage rows for
files being deleted, and protected event clips.

The schema is versioned with ``PRAGMA user_version`` and upgraded by `MIGRATIONS`, one
step per version, each in its own transaction (support/sqlite.py). A database newer than
this code is refused (`IndexError_`) rather than guessed at.

Paths are stored relative to the store root, so a disk moved to another node (or mounted
elsewhere) keeps a valid index.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from support.sqlite import NewerSchema, migrate, schema_version

log = logging.getLogger(__name__)

#: Schema steps: MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: list[str] = [
    # 0 -> 1: segments, garbage rows, protected clips, counters.
    """
    CREATE TABLE segment (
        id INTEGER PRIMARY KEY,
        camera TEXT NOT NULL,
        path TEXT NOT NULL UNIQUE,       -- relative to the store root
        start REAL NOT NULL,             -- wall clock, UTC epoch seconds
        end REAL NOT NULL,
        bytes INTEGER NOT NULL,
        recovered INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX segment_start ON segment (start);
    CREATE INDEX segment_camera_start ON segment (camera, start);
    CREATE TABLE garbage (path TEXT PRIMARY KEY);
    CREATE TABLE clip (
        event_id TEXT PRIMARY KEY,
        start REAL NOT NULL,
        end REAL NOT NULL,
        cameras TEXT NOT NULL,           -- ',cam1,cam2,' or '' for every camera
        created REAL NOT NULL
    );
    CREATE TABLE counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

#: Segments last at most segment_s (<= 300 s) plus a GOP; recovered ones are shorter.
#: Bounds the index range scans of `protected_bytes` (deletion checks are exact).
MAX_SEGMENT_S = 600.0

# A segment is protected when a clip covering its camera overlaps it in time.
_PROTECTED = """EXISTS (SELECT 1 FROM clip c WHERE c.start < s.end AND c.end > s.start
                AND (c.cameras = '' OR instr(c.cameras, ',' || s.camera || ',') > 0))"""


class IndexError_(Exception):
    """The index cannot be used (newer schema, corrupt file)."""


@dataclass(frozen=True)
class Segment:
    """One indexed segment file."""

    id: int
    camera: str
    path: str
    start: float
    end: float
    bytes: int

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Clip:
    """A protected time range of some (or all, when `cameras` is empty) cameras."""

    event_id: str
    start: float
    end: float
    cameras: tuple[str, ...]


def _segment(row: sqlite3.Row | tuple) -> Segment:
    return Segment(*row[:6])


def _cameras_field(cameras: Iterable[str]) -> str:
    names = sorted(set(cameras))
    return "," + ",".join(names) + "," if names else ""


class Index:
    """The store's index database (WAL, synchronous=NORMAL; see docs/storage.md)."""

    FILENAME = "index.sqlite3"

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = _connect_readonly(path)
        else:
            self.db = sqlite3.connect(path, check_same_thread=False, timeout=10,
                                      isolation_level=None)
        try:
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                # Keep the WAL small: checkpoint every ~1 MiB and truncate it back after.
                self.db.execute("PRAGMA wal_autocheckpoint=256")
                self.db.execute(f"PRAGMA journal_size_limit={2**20}")
                self.migrate()
            version = self.version()
            if version != SCHEMA_VERSION:
                raise IndexError_(f"{path}: schema version {version}, this code knows "
                                  f"{SCHEMA_VERSION}")
        except BaseException:
            self.db.close()  # a failed open must not hold the disk
            raise

    def close(self) -> None:
        self.db.close()

    # -- schema ---------------------------------------------------------------------
    def version(self) -> int:
        return schema_version(self.db)

    def migrate(self, migrations: list[str] = MIGRATIONS) -> int:
        """Bring the schema to `len(migrations)`; returns the number of steps applied."""
        try:
            return migrate(self.db, migrations)
        except NewerSchema as exc:
            raise IndexError_(f"{self.path}: {exc}; upgrade the firmware") from None

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    # -- segments -------------------------------------------------------------------
    def add(self, camera: str, path: str, start: float, end: float, size: int,
            recovered: bool = False) -> Segment:
        with self.transaction():
            cur = self.db.execute(
                "INSERT INTO segment (camera, path, start, end, bytes, recovered) "
                "VALUES (?, ?, ?, ?, ?, ?)", (camera, path, start, end, size, int(recovered)))
            if recovered:
                self._count("recovered", 1)
        return Segment(int(cur.lastrowid or 0), camera, path, start, end, size)

    def segments(self, camera: str | None = None, start: float | None = None,
                 end: float | None = None) -> list[Segment]:
        """Segments (of `camera`) overlapping [start, end), oldest first."""
        sql = "SELECT id, camera, path, start, end, bytes FROM segment s WHERE 1"
        args: list[object] = []
        if camera is not None:
            sql += " AND camera = ?"
            args.append(camera)
        if start is not None:
            sql += " AND end > ?"
            args.append(start)
        if end is not None:
            sql += " AND start < ?"
            args.append(end)
        return [_segment(r) for r in self.db.execute(sql + " ORDER BY start, id", args)]

    def cameras(self) -> list[str]:
        """Names of the cameras that have footage."""
        return [r[0] for r in self.db.execute("SELECT DISTINCT camera FROM segment ORDER BY 1")]

    def paths(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT path FROM segment")}

    def oldest(self, *, camera: str | None = None, protected: bool | None = False,
               before: float | None = None, since: float | None = None,
               keep_recent_s: float = 0.0, limit: int = 32) -> list[Segment]:
        """The oldest segments; `protected` False/True/None = unprotected/protected/any.

        Without `before`, "oldest" is the order of recording (row ids), not the stamped
        start: a Pi without a clock stamps what it records before NTP sync with 1970
        times, and that footage is not older than what the last boot recorded. With
        `before` (max age: a question about time) it is the segments ending before it,
        and starting at or after `since`, by start time. `keep_recent_s` leaves out each
        camera's newest footage, as many segments (newest first, in recording order) as
        it takes to hold that many seconds."""
        sql = "SELECT id, camera, path, start, end, bytes FROM segment s WHERE 1"
        args: list[object] = []
        if camera is not None:
            # `+camera`: walk the rows in id order rather than sort the camera's rows.
            sql += " AND camera = ?" if before is not None else " AND +camera = ?"
            args.append(camera)
        if before is not None:
            sql += " AND end < ?"
            args.append(before)
        if since is not None:
            sql += " AND start >= ?"
            args.append(since)
        if protected is not None:
            sql += f" AND {'' if protected else 'NOT'} {_PROTECTED}"
        if keep_recent_s > 0:
            sql += (" AND s.id NOT IN (SELECT id FROM (SELECT id, end - start AS d,"
                    " SUM(end - start) OVER (PARTITION BY camera ORDER BY id DESC) AS newer"
                    " FROM segment)"
                    " WHERE newer - d < ?)")
            args.append(keep_recent_s)
        sql += " ORDER BY start, id LIMIT ?" if before is not None else " ORDER BY id LIMIT ?"
        args.append(limit)
        return [_segment(r) for r in self.db.execute(sql, args)]

    def usage(self) -> dict[str, int]:
        """Bytes per camera."""
        return dict(self.db.execute("SELECT camera, SUM(bytes) FROM segment GROUP BY camera"))

    def protected_bytes(self, camera: str | None = None) -> int:
        """Bytes of the segments (of `camera`) some clip protects (each counted once).

        Walks the clips and, for each, the segments that start in its range (less the
        longest a segment can last), through the start index: cheap however large the
        store, where a scan of every segment would not be."""
        sql = ("SELECT SUM(bytes) FROM segment WHERE id IN ("
               " SELECT s.id FROM clip c JOIN segment s"
               " ON s.start < c.end AND s.start > c.start - ? AND s.end > c.start"
               " AND (c.cameras = '' OR instr(c.cameras, ',' || s.camera || ',') > 0)")
        args: list[object] = [MAX_SEGMENT_S]
        if camera is not None:
            sql += " AND s.camera = ?"
            args.append(camera)
        row = self.db.execute(sql + ")", args).fetchone()
        return int(row[0] or 0)

    def oldest_by_camera(self) -> dict[str, float]:
        """The start of each camera's oldest segment (read-only query for the web page)."""
        return dict(self.db.execute("SELECT camera, MIN(start) FROM segment GROUP BY camera"))

    def oldest_start(self) -> float | None:
        row = self.db.execute("SELECT MIN(start) FROM segment").fetchone()
        return row[0]

    def forget(self, ids: Iterable[int]) -> int:
        """Drop rows whose files are gone (recovery). Returns how many."""
        ids = list(ids)
        with self.transaction():
            self.db.executemany("DELETE FROM segment WHERE id = ?", [(i,) for i in ids])
        return len(ids)

    # -- Moonfire-style deletion: rows become garbage before their files go ---------
    def to_garbage(self, segments: Iterable[Segment]) -> None:
        segments = list(segments)
        with self.transaction():
            self.db.executemany("INSERT OR IGNORE INTO garbage (path) VALUES (?)",
                                [(s.path,) for s in segments])
            self.db.executemany("DELETE FROM segment WHERE id = ?", [(s.id,) for s in segments])
            self._count("garbage", len(segments))

    def garbage(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM garbage")]

    def collect(self, paths: Iterable[str]) -> None:
        """The files of these garbage rows are unlinked (and the unlink synced)."""
        with self.transaction():
            self.db.executemany("DELETE FROM garbage WHERE path = ?", [(p,) for p in paths])

    # -- clips ----------------------------------------------------------------------
    def protect(self, event_id: str, start: float, end: float, cameras: Iterable[str]) -> None:
        """Protect a range; the same event again widens its range."""
        with self.transaction():
            row = self.db.execute("SELECT start, end FROM clip WHERE event_id = ?",
                                  (event_id,)).fetchone()
            if row:
                start, end = min(start, row[0]), max(end, row[1])
            self.db.execute(
                "INSERT OR REPLACE INTO clip (event_id, start, end, cameras, created) "
                "VALUES (?, ?, ?, ?, ?)",
                (event_id, start, end, _cameras_field(cameras), time.time()))

    def clips(self) -> list[Clip]:
        rows = self.db.execute("SELECT event_id, start, end, cameras FROM clip ORDER BY start")
        return [Clip(e, s, t, tuple(c for c in cams.split(",") if c)) for e, s, t, cams in rows]

    def clip(self, event_id: str) -> Clip | None:
        return next((c for c in self.clips() if c.event_id == event_id), None)

    def clip_bytes(self, clip: Clip) -> int:
        """Bytes of the segments `clip` covers."""
        sql = ("SELECT SUM(bytes) FROM segment s WHERE s.start < ? AND s.end > ?")
        args: list[object] = [clip.end, clip.start]
        if clip.cameras:
            sql += f" AND camera IN ({','.join('?' * len(clip.cameras))})"
            args += list(clip.cameras)
        return int(self.db.execute(sql, args).fetchone()[0] or 0)

    def release(self, event_id: str) -> None:
        with self.transaction():
            self.db.execute("DELETE FROM clip WHERE event_id = ?", (event_id,))
            self._count("released_clips", 1)

    # -- counters -------------------------------------------------------------------
    def _count(self, name: str, n: int) -> None:
        self.db.execute("INSERT INTO counter (name, value) VALUES (?, ?) ON CONFLICT(name) "
                        "DO UPDATE SET value = value + excluded.value", (name, n))

    def count(self, name: str, n: int = 1) -> None:
        with self.transaction():
            self._count(name, n)

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counter"))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection, also when the disk itself is read-only.

    SQLite opens a WAL database read-only only if it can make the -shm file, so on a disk
    the kernel remounted read-only after an error (the moment footage matters most) a plain
    ``mode=ro`` fails. No writer can exist on a read-only filesystem, so the database is
    then opened as immutable; rows still only in a -wal file left by a crash are not seen.
    """
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                         timeout=10)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return db
    except sqlite3.OperationalError:
        db.close()
        if not os.statvfs(path.parent).f_flag & os.ST_RDONLY:
            raise
    log.warning("%s: the disk is read-only: the index is read as it is on disk", path)
    return sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True,
                           check_same_thread=False, timeout=10)
