"""SQLite files that upgrade their own schema: ``PRAGMA user_version`` and a list of steps.

``migrations[n]`` takes a database from version n to n + 1 and runs in its own transaction,
so a power cut leaves the file at one version or the next, never between. A file written by
newer code (after a downgrade) is refused with `NewerSchema`, never guessed at.

>>> import sqlite3
>>> db = sqlite3.connect(":memory:", isolation_level=None)
>>> steps = ["CREATE TABLE note (text TEXT)", "ALTER TABLE note ADD COLUMN ts REAL"]
>>> migrate(db, steps), migrate(db, steps), schema_version(db)
(2, 0, 2)
>>> migrate(db, steps[:1])
Traceback (most recent call last):
...
support.sqlite.NewerSchema: schema version 2 is newer than this firmware's (1)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence


class NewerSchema(sqlite3.DatabaseError):
    """The database was written by newer code than this: it is left untouched."""


def schema_version(db: sqlite3.Connection) -> int:
    """The ``PRAGMA user_version`` of `db`."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_version(db: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """The schema version of `db`; `NewerSchema` when it is newer than `migrations` know."""
    version = schema_version(db)
    if version > len(migrations):
        raise NewerSchema(f"schema version {version} is newer than this firmware's "
                          f"({len(migrations)})")
    return version


def migrate(db: sqlite3.Connection, migrations: Sequence[str]) -> int:
    """Bring `db` (opened with ``isolation_level=None``) to version ``len(migrations)``;
    returns the number of steps applied. Each step is `;`-separated statements."""
    version = check_version(db, migrations)
    for target in range(version + 1, len(migrations) + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[target - 1].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {target}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return len(migrations) - version
