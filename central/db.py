"""One small database layer over SQLite (embedded default) and PostgreSQL (a city).

`Database(url)` hands each thread its own connection; `db.tx()` is one transaction;
SQL is written once with `?` placeholders (translated for psycopg) in the subset both
engines accept (`ON CONFLICT ... DO NOTHING/UPDATE`, `excluded.`). The schema is a list of
numbered migrations (`central.migrations`) applied in order and recorded in
`schema_version`, as `recorder/index.py` does for its SQLite index: six tables do not need
an ORM or alembic, and a newcomer reads the whole schema in one file.

Example::

    db = Database("sqlite:///var/lib/ronda-central/central.sqlite3").migrate()
    with db.tx() as cur:
        cur.execute("SELECT count(*) FROM events")
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

_PARAM = re.compile(r"\?")


class Database:
    """A URL (`sqlite:///path`, `postgresql://...`) and a connection per thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
        elif url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            self.path = Path(url.removeprefix("sqlite:///"))
        else:
            raise ValueError(
                f"database url must be sqlite:///PATH or postgresql://..., got {url!r}")
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    # -- connections -----------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
        else:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)
        with self._lock:
            self._all.append(conn)
        return conn

    @property
    def conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            with suppress(Exception):
                conn.close()
        self._local = threading.local()

    # -- statements ------------------------------------------------------------------------
    def sql(self, text: str) -> str:
        return text if self.dialect == "sqlite" else _PARAM.sub("%s", text)

    @contextmanager
    def tx(self) -> Iterator[Cursor]:
        """One transaction (BEGIN IMMEDIATE on SQLite: writers queue instead of failing)."""
        conn = self.conn
        if self.dialect == "sqlite":
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Cursor(self, conn.cursor())
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        else:
            try:
                with conn.transaction():
                    yield Cursor(self, conn.cursor())
            except Exception:
                if conn.closed or conn.broken:
                    self._local.conn = None
                raise

    def query(self, text: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows of a read as dicts (outside any transaction)."""
        cur = self.conn.cursor()
        try:
            cur.execute(self.sql(text), tuple(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except Exception:
            if self.dialect == "postgresql" and (self.conn.closed or self.conn.broken):
                self._local.conn = None
            raise

    def one(self, text: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(text, params)
        return rows[0] if rows else None

    def scalar(self, text: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self.sql(text), tuple(params))
        row = cur.fetchone()
        return row[0] if row else None

    # -- schema ----------------------------------------------------------------------------
    def version(self) -> int:
        with self.tx() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            cur.execute("SELECT max(version) FROM schema_version")
            return int(cur.fetchone()[0] or 0)

    def migrate(self) -> Database:
        """Apply every migration newer than the database, each in its own transaction."""
        from central.migrations import MIGRATIONS

        if self.dialect == "postgresql":  # two workers starting at once migrate once
            self.conn.execute("SELECT pg_advisory_lock(7218)")
        try:
            current = self.version()
            for number, statements in enumerate(MIGRATIONS, start=1):
                if number <= current:
                    continue
                with self.tx() as cur:
                    for stmt in statements:
                        if isinstance(stmt, dict):
                            stmt = stmt.get(self.dialect)
                            if stmt is None:
                                continue
                        cur.execute(self.render(stmt))
                    cur.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
        finally:
            if self.dialect == "postgresql":
                self.conn.execute("SELECT pg_advisory_unlock(7218)")
        return self

    def render(self, ddl: str) -> str:
        """DDL with the few type names that differ filled in."""
        types = {"sqlite": {"serial": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB"},
                 "postgresql": {"serial": "BIGSERIAL PRIMARY KEY", "blob": "BYTEA"}}[self.dialect]
        return ddl.format(**types)


class Cursor:
    """A cursor that takes `?` placeholders on both engines."""

    def __init__(self, db: Database, cur: Any) -> None:
        self.db = db
        self.cur = cur

    def execute(self, text: str, params: Sequence[Any] = ()) -> Cursor:
        self.cur.execute(self.db.sql(text), tuple(params))
        return self

    @property
    def rowcount(self) -> int:
        return self.cur.rowcount

    def fetchone(self) -> Any:
        return self.cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self.cur.fetchall()
