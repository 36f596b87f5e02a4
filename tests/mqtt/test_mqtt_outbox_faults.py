"""The outbox under disk faults, on real SQLite files: damage, transient errors, a full
disk, a state directory that cannot be written."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from mqtt.outbox import Outbox, is_corruption


def _damage_table_not_index(path: Path) -> None:
    """200 panics, then a page in the middle of the file (the table's data, not the
    small index or the meta table) overwritten: the schema and COUNT(*) still work."""
    box = Outbox(path)
    box.put_many([(f"e{i}", 2, {"type": "panic", "pad": "x" * 2000}, None) for i in range(200)])
    box.close()
    _damage_in_place(path)


def _damage_in_place(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.seek(4096 * (size // 4096 // 2))
        fh.write(b"\xff" * 4096)


def test_table_damaged_moved_aside_and_seq_continues(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    _damage_table_not_index(path)
    box = Outbox(path)  # used to raise DatabaseError from the totals query
    assert box.recovered_from is not None and box.recovered_from.exists()
    assert box.recoveries == 1 and not box.degraded
    assert box.depth() == 0
    assert box.put("after", 2, {"type": "panic"}) == 201, "seq continues past the damage"
    assert box.stats()["recoveries"] == 1 and box.stats()["storage"] == "disk"


def test_mqtt_area_builds_on_a_damaged_outbox(tmp_path: Path) -> None:
    from firmware.bus import EventBus
    from firmware.config import parse
    from firmware.wiring.mqtt import OUTBOX_FILE, MqttBridge

    state = tmp_path / "state"
    state.mkdir()
    _damage_table_not_index(state / OUTBOX_FILE)
    config = parse({"node": {"id": "rw05", "data_dir": str(state)},
                    "mqtt": {"brokers": ["mqtt://127.0.0.1:1"]}})
    bridge = MqttBridge(config, EventBus(), lambda: {}, state)
    assert bridge.health()["outbox_recoveries"] == 1
    bridge.outbox.close()


def test_transient_error_at_open_keeps_the_outbox(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.put_many([(f"panic{i}", 2, {"type": "panic"}, None) for i in range(3)])
    box.close()
    real_open, calls = Outbox._open, [0]

    def flaky(self: Outbox, *args: object) -> sqlite3.Connection:
        calls[0] += 1
        if calls[0] == 1:  # one transient EIO (or "database is locked")
            raise sqlite3.OperationalError("disk I/O error")
        return real_open(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Outbox, "_open", flaky)
    box = Outbox(path)
    assert box.recovered_from is None and sorted(os.listdir(tmp_path))[0] == "o.sqlite3"
    assert [i.id for i in box.pending()] == ["panic0", "panic1", "panic2"]
    assert box.put("next", 2, {}) == 4


def test_only_corruption_counts_as_corruption(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    Outbox(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("BEGIN EXCLUSIVE")
    assert not is_corruption(locked.value)
    holder.execute("ROLLBACK")
    junk = tmp_path / "junk"
    junk.write_bytes(b"not a database" * 500)
    with pytest.raises(sqlite3.DatabaseError) as notadb:
        sqlite3.connect(junk).execute("SELECT * FROM sqlite_master").fetchall()
    assert is_corruption(notadb.value)


def test_unwritable_state_dir_degrades_to_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state directory should be")
    box = Outbox(blocker / "o.sqlite3")
    assert box.degraded and box.stats()["storage"] == "memory"
    assert box.put("panic", 2, {"type": "panic"}) == 1
    assert [i.id for i in box.pending()] == ["panic"]
    box.remember_command("c1", 1.0)
    assert box.seen_commands(since=0.0) == [("c1", 1.0)]


def test_full_disk_keeps_totals_and_reports_the_real_error(tmp_path: Path) -> None:
    """SQLITE_FULL rolls the transaction back by itself: no second ROLLBACK error masks
    it, the totals are recounted, and no event is dropped for room that is not taken."""
    box = Outbox(tmp_path / "o.sqlite3", max_events=50)
    box.put_many([(f"e{i}", 1, {"p": "x" * 500}, None) for i in range(10)])
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages + 3}")  # the SD card is full
    errors: list[str] = []
    for round_ in range(10):
        try:
            box.put_many([(f"r{round_}-{i}", 1, {"p": "x" * 3000}, None) for i in range(20)])
        except sqlite3.Error as exc:
            errors.append(str(exc))
    rows = box._db.execute("SELECT COUNT(*), SUM(size) FROM outbox").fetchone()
    assert errors and all("full" in e for e in errors), errors[:2]
    assert (box.depth(), box.size_bytes()) == rows, "in-memory totals drifted from the rows"
    box._db.execute("PRAGMA max_page_count=1000000")  # space again
    drops = box.drops()
    for i in range(3):
        box.put(f"panic{i}", 2, {"type": "panic"})
    assert box.drops() == drops, "panics stored after the disk freed up must drop nothing"
    assert box.depth() == rows[0] + 3


def test_writer_keeps_events_in_memory_when_the_disk_refuses(tmp_path: Path) -> None:
    """A full (or read-only) disk while running: the writer's batch is not dropped, the
    outbox continues in memory with what it held, `seq` goes on, health says so."""
    from mqtt.outbox import OutboxWriter

    box = Outbox(tmp_path / "o.sqlite3")
    box.put_many([(f"e{i}", 1, {"p": "x" * 500}, None) for i in range(10)])
    box.remove([1])
    pages = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count={pages}")
    errors: list[Exception] = []
    writer = OutboxWriter(box, on_error=lambda exc, n: errors.append(exc))
    writer._thread = object()  # type: ignore[assignment]  # flush() writes
    for i in range(40):
        writer.submit(f"panic{i}", 2, {"type": "panic", "pad": "x" * 3000}, None)
    writer.flush()
    assert not errors and box.degraded and box.stats()["storage"] == "memory"
    items = box.pending(limit=100)
    assert [i.seq for i in items] == list(range(2, 51))
    assert [i.id for i in items][-40:] == [f"panic{i}" for i in range(40)]
    assert box.depth() == 49 and box.drops() == 0
    box.remove([2, 3])
    assert box.depth() == 47


def test_read_only_database_while_running_keeps_acks_and_events(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3")
    box.put_many([(f"e{i}", 1, {}, None) for i in range(3)])
    box._db.execute("PRAGMA query_only=1")  # every write: SQLITE_READONLY
    box.remove([1])  # used to raise into the link's pump
    assert box.degraded and [i.seq for i in box.pending()] == [2, 3]
    assert box.put("panic", 2, {"type": "panic"}) == 4


def test_no_deletion_when_the_new_event_is_dropped_anyway(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=100, max_bytes=3000)
    box.put("low1", 0, {"x": "a" * 300})
    box.put("low2", 0, {"x": "a" * 300})
    box.put("hi", 2, {"x": "a" * 1000})
    # A normal event of 2 kB: even both low ones gone, it would not fit beside the panic.
    box.put("normal-big", 1, {"x": "a" * 2000})
    assert [i.id for i in box.pending()] == ["low1", "low2", "hi"]
    assert box.drops() == 1
    # When room can be made, every deletion counts as a drop.
    box.put("normal", 1, {"x": "a" * 1500})
    assert [i.id for i in box.pending()] == ["low2", "hi", "normal"]
    assert box.drops() == 2


def test_damage_found_while_running_keeps_seq_going(tmp_path: Path) -> None:
    """The file is damaged beyond reading its meta while the node runs: the writer moves
    it aside and `seq` continues after the last one handed out (the link only publishes
    seqs above what it sent)."""
    from mqtt.outbox import OutboxWriter

    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.put_many([(f"e{i}", 1, {}, None) for i in range(5)])
    box._db.close()
    path.write_bytes(b"garbage, not a database" * 400)
    box._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    errors: list[Exception] = []
    writer = OutboxWriter(box, on_error=lambda exc, n: errors.append(exc))
    writer._thread = object()  # type: ignore[assignment]
    writer.submit("panic", 2, {"type": "panic"}, None)
    writer.flush()
    assert not errors and box.recoveries == 1 and not box.degraded
    assert [(i.id, i.seq) for i in box.pending()] == [("panic", 6)]


def test_damage_found_by_a_read_while_running_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path)
    box.put_many([(f"e{i}", 2, {"type": "panic", "pad": "x" * 2000}, None) for i in range(200)])
    box._db.close()
    _damage_in_place(path)
    box._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    assert box.pending(limit=300) == [], "moved aside instead of failing every read"
    assert box.recoveries == 1 and box.put("panic", 2, {"type": "panic"}) == 201
