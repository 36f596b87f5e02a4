"""The durable outbox on real SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mqtt.outbox import Outbox
from tests.waiting import wait_for


def _fill(box: Outbox, n: int, priority: int = 1, start: int = 0) -> list[int]:
    return [box.put(f"e{start + i}", priority, {"n": start + i}) for i in range(n)]


def test_seq_increases_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    assert _fill(box, 3) == [1, 2, 3]
    box.remove([1, 2, 3])
    box.close()
    box = Outbox(path)
    assert box.depth() == 0
    assert box.put("e3", 1, {}) == 4, "seq must never repeat after a restart"


def test_pending_in_seq_order_and_payload_carries_seq(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    _fill(box, 5)
    box.remove([2])
    items = box.pending(limit=10)
    assert [i.seq for i in items] == [1, 3, 4, 5]
    assert b'"seq":3' in items[1].payload and items[1].id == "e2"
    assert [i.seq for i in box.pending(after=3, limit=1)] == [4]


def test_written_durably_before_put_returns(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.put("x", 2, {"type": "panic"}, snapshot=b"\xff\xd8jpeg")
    other = sqlite3.connect(path)  # a second connection sees the committed row
    row = other.execute("SELECT id, snapshot FROM outbox").fetchone()
    assert row == ("x", b"\xff\xd8jpeg")
    assert other.execute("PRAGMA synchronous").fetchone()[0] in (0, 1, 2, 3)
    assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_count_bound_drops_oldest_low_priority_first(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=10)
    _fill(box, 3, priority=2, start=0)     # panics: seq 1-3
    _fill(box, 4, priority=0, start=3)     # low: seq 4-7
    _fill(box, 3, priority=1, start=7)     # normal: seq 8-10
    assert box.depth() == 10 and box.drops() == 0
    _fill(box, 5, priority=1, start=10)    # 5 more: the 4 low go, then the oldest normal
    seqs = [i.seq for i in box.pending(limit=100)]
    assert seqs == [1, 2, 3, 9, 10, 11, 12, 13, 14, 15]
    assert box.drops() == 5
    _fill(box, 1, priority=0, start=15)    # a low one cannot push out normal or high
    assert box.drops() == 6 and 16 not in [i.seq for i in box.pending(limit=100)]


def test_panic_dropped_last(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=10)
    _fill(box, 10, priority=2)
    _fill(box, 3, priority=1, start=10)
    assert [i.priority for i in box.pending(limit=100)] == [2] * 10
    _fill(box, 2, priority=2, start=13)  # only panics left: the oldest panic goes
    assert [i.seq for i in box.pending(limit=100)][:2] == [3, 4]
    assert box.drops() == 5


def test_byte_bound_and_drops_persist(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_events=1000, max_bytes=65536)
    for i in range(20):
        box.put(f"e{i}", 1, {"i": i}, snapshot=b"x" * 10_000)
    assert box.size_bytes() <= 65536
    assert box.depth() == 6
    drops = box.drops()
    assert drops == 14
    box.close()
    again = Outbox(path, max_events=1000, max_bytes=65536)
    assert again.drops() == drops and again.depth() == 6
    assert again.size_bytes() == sum(len(i.payload) + len(i.snapshot or b"")
                                     for i in again.pending(limit=100))


def test_seen_commands_expire(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.remember_command("old", 100.0)
    box.remember_command("new", 1000.0)
    assert box.seen_commands(since=500.0) == [("new", 1000.0)]


def test_payload_made_strict_json(tmp_path: Path) -> None:
    import json

    import numpy as np

    box = Outbox(tmp_path / "o.sqlite3")
    box.put("n", 1, {"score": np.float32(0.5), "box": np.array([0.1, 0.2]),
                     "bad": float("nan"), "zones": ("a", "b"), "raw": b"x"})
    doc = json.loads(box.pending()[0].payload)
    assert doc == {"score": 0.5, "box": [0.1, 0.2], "bad": None, "zones": ["a", "b"],
                   "raw": None, "seq": 1}


def test_writer_group_commits_in_order(tmp_path: Path) -> None:
    import threading

    from mqtt.outbox import OutboxWriter

    box = Outbox(tmp_path / "o.sqlite3")
    stored: list[int] = []
    done = threading.Event()

    def on_stored(n: int) -> None:
        stored.append(n)
        if sum(stored) == 500:
            done.set()

    writer = OutboxWriter(box, on_stored=on_stored)
    for i in range(500):
        writer.submit(f"e{i}", 1, {"n": i}, None)
    assert done.wait(30)
    items = box.pending(limit=1000)
    assert [i.seq for i in items] == list(range(1, 501))
    assert [i.id for i in items] == [f"e{i}" for i in range(500)]
    assert writer.batches == len(stored) < 500, "events waiting together share a commit"


def test_writer_reports_errors_and_flushes(tmp_path: Path) -> None:
    from mqtt.outbox import OutboxWriter

    box = Outbox(tmp_path / "o.sqlite3")
    errors: list[tuple[str, int]] = []
    writer = OutboxWriter(box, on_error=lambda exc, n: errors.append((type(exc).__name__, n)))
    writer._thread = object()  # type: ignore[assignment]  # no writer thread: flush() does it
    writer.submit("a", 1, {}, None)
    writer.flush()
    assert box.depth() == 1 and writer.backlog() == 0
    box.close()
    writer.submit("b", 1, {}, None)
    writer.flush()
    assert errors == [("ProgrammingError", 1)]


def test_corrupt_file_moved_aside_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    path.write_bytes(b"this is not a database, a power cut mangled it" * 100)
    box = Outbox(path)
    assert box.depth() == 0 and box.put("e", 2, {}) == 1
    assert box.recovered_from is not None and box.recovered_from.exists()
    assert box.recovered_from.read_bytes().startswith(b"this is not a database")


def test_remove_many_keeps_totals(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.put_many([(f"e{i}", 1, {"i": i}, b"j" * (i % 7)) for i in range(1500)])
    box.remove([*range(1, 1201), 99999])
    assert box.depth() == 300
    again = Outbox(tmp_path / "o.sqlite3")
    assert (again.depth(), again.size_bytes()) == (box.depth(), box.size_bytes())


def test_kill9_window_is_one_batch_and_an_alarm_is_durable_one_batch_after_its_press(
        tmp_path: Path) -> None:
    """A burst arrives while a transaction is under way (its fsync held here): everything
    that waited, the panic among it, is committed by the *next* transaction, so a kill -9
    can only hit the batch in progress. It used to take 256 events per transaction: a
    burst of 1,000 took four, and a kill 50 ms after the burst lost 231 events."""
    import threading

    from mqtt.outbox import OutboxWriter

    box = Outbox(tmp_path / "o.sqlite3")
    real_put = box.put_many
    in_first, release = threading.Event(), threading.Event()
    batches: list[int] = []

    def slow_put(events: list) -> list[int]:  # the first transaction waits for its fsync
        if not batches:
            in_first.set()
            assert release.wait(10)
        seqs = real_put(events)
        batches.append(len(events))
        return seqs

    box.put_many = slow_put  # type: ignore[method-assign]
    alarms: list[int] = []
    writer = OutboxWriter(box, on_alarm=lambda: alarms.append(sum(batches)))
    writer.submit("first", 1, {}, None)
    assert in_first.wait(10)
    for i in range(998):
        writer.submit(f"o{i}", 1, {"i": i}, None)
    writer.submit("panic", 2, {"type": "panic"}, None)  # pressed during the burst
    writer.submit("last", 1, {}, None)
    assert Outbox(tmp_path / "o.sqlite3").depth() == 0, "a kill now loses the batch in progress"
    release.set()
    wait_for(lambda: sum(batches) >= 1001 and alarms, 30, "the second batch")
    assert batches == [1, 1000], "what waited during a transaction is committed by the next"
    assert alarms == [1001], "the panic was durable one batch after its press"
    items = box.pending(limit=2000)
    assert [i.id for i in items][:2] == ["first", "o0"] and items[-2].id == "panic"
    assert [i.seq for i in items] == list(range(1, 1002)), "submission order kept"


def test_schema_versioned_old_file_adopted_newer_file_left_alone(tmp_path: Path) -> None:
    """An outbox from before the schema had a version is adopted with its events; one
    written by newer firmware is not touched: the outbox runs in memory and says why."""
    from mqtt.outbox import MIGRATIONS, SCHEMA_VERSION

    old = tmp_path / "old.sqlite3"
    db = sqlite3.connect(old)
    db.executescript(MIGRATIONS[0])  # the tables as the unversioned code made them
    db.execute("INSERT INTO outbox VALUES (7, 'p', 2, 0, '{\"seq\":7}', NULL, 9)")
    db.execute("INSERT INTO meta VALUES ('seq', 7)")
    db.commit()
    db.close()
    box = Outbox(old)
    assert box.depth() == 1 and box.put("n", 1, {}) == 8 and not box.degraded
    box.close()
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION

    newer = tmp_path / "newer.sqlite3"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.execute("CREATE TABLE future (x)")
    db.commit()
    db.close()
    before = newer.read_bytes()
    box = Outbox(newer, open_retries=1)
    assert "newer than this firmware" in box.degraded and box.stats()["storage"] == "memory"
    assert box.put("e", 2, {}) == 1
    box.close()
    assert newer.read_bytes() == before, "the newer file and its events are kept as they were"
