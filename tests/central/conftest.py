"""Fixtures of the central service's tests: one PostgreSQL per session, a broker that
keeps sessions, a database of either engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from central.db import Database
from central.devtools.postgres import LocalPostgres
from devtools.broker import LocalBroker

# What a city broker needs for the Command Center (docs/central.md): sessions survive a
# restart, and the queue of an absent ingest is not cut at Mosquitto's default 1000.
BROKER_CONFIG = "max_queued_messages 0\nset_tcp_nodelay true\n"


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    with LocalPostgres() as pg:
        yield pg


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    """A broker of the test's own, not the session's (tests/conftest.py): the ingest keeps
    persistent sessions (queued messages survive a disconnect) and some tests restart the
    broker, so a shared one would carry one test's queue into the next."""
    with LocalBroker(persistence=True, extra_config=BROKER_CONFIG) as b:
        yield b


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/central.sqlite3"
    pg = request.getfixturevalue("postgres")
    return pg.url(f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url).migrate()
    yield database
    database.close()
