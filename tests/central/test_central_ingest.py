"""Ingest into SQLite and PostgreSQL through a real Mosquitto: validation, dedupe by id,
seq gaps, persistent sessions across broker and ingest restarts, shared subscriptions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from central_kit import FakeNode

from central import views
from central.db import Database
from central.ingest import IngestWorker
from central.mqtt_client import ClientOptions
from central.settings import CentralSettings
from mqtt.link import encode
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 64 + b"\xff\xd9"


def count(db: Database, table: str, where: str = "1=1", params: tuple = ()) -> int:
    return int(db.scalar(f"SELECT count(*) FROM {table} WHERE {where}", params))


def test_every_kind_is_stored_invalid_is_kept_aside_duplicates_and_gaps_counted(db, broker):
    worker = IngestWorker(db, ClientOptions(broker=broker.url), client_id="t-ingest").start()
    node = FakeNode(broker.port, "rw-01")
    try:
        assert worker.wait_connected()
        node.health(name="Pos RW 01", location=[-7.4797, 110.2177])
        node.output("siren", "off")
        first = node.event()
        node.client.publish(node.topics.event_snapshot(first["id"]), JPEG, qos=1)
        node.send(first)
        node.send(first)  # a redelivery: same id
        node.seq += 2  # two events dropped at the node: a gap of 2
        panic = node.event("panic")
        node.send(panic)
        node.client.publish(node.topics.events, b'{"v":1,"id":"x"}', qos=1)  # breaks the schema
        node.client.publish(node.topics.events, b"not json", qos=1)
        node.client.publish(node.topics.reply, encode({"v": 1, "node": "rw-01", "id": "c1",
                                                       "action": "ping", "ok": True,
                                                       "message": "pong", "data": {},
                                                       "ts": 1.0}), qos=1)
        wait_for(lambda: count(db, "replies") == 1 and count(db, "rejects") == 2
                 and count(db, "events") == 2 and count(db, "outputs") == 1, 40, "ingest")
        wait_for(lambda: db.scalar("SELECT duplicates FROM nodes WHERE id='rw-01'") == 1, 5,
                 "the duplicate counted")
        row = db.one("SELECT * FROM nodes WHERE id = 'rw-01'")
        assert row["status"] == "online" and row["name"] == "Pos RW 01"
        assert (row["lat"], row["lon"]) == (-7.4797, 110.2177)
        assert views.lost({**row, "events": row["events"]}) == 2
        assert count(db, "snapshots", "event_id = ?", (first["id"],)) == 1
        alarm = db.one("SELECT * FROM alarms")
        assert alarm["node"] == "rw-01" and alarm["kind"] == "panic" and alarm["state"] == "new"
        errors = [r["error"] for r in db.query("SELECT error FROM rejects ORDER BY id")]
        assert "event schema" in errors[0] and "not JSON" in errors[1]
        stored = json.loads(db.scalar("SELECT doc FROM events WHERE id = ?", (first["id"],)))
        assert stored == first
        nodes = views.nodes(db, CentralSettings())
        assert nodes[0]["state"] == "alarm" and nodes[0]["lost"] == 2
    finally:
        node.stop()
        worker.stop()


@pytest.mark.slow
def test_broker_restart_with_nodes_sending_meanwhile_loses_nothing(db, broker):
    worker = IngestWorker(db, ClientOptions(broker=broker.url), client_id="t-ingest-b").start()
    assert worker.wait_connected()
    node = FakeNode(broker.port, "rw-02")
    try:
        for _ in range(50):
            node.send(node.event())
        wait_for(lambda: count(db, "events") == 50, 15, "the first 50")
        broker.restart()  # persistence on: the ingest's session survives
        # the node is back before the ingest resubscribes: only the session queues these
        wait_for(lambda: node.client.is_connected(), 15, "the node to reconnect")
        for _ in range(100):
            node.send(node.event())
        wait_for(lambda: count(db, "events") == 150, 30, "all 150 events")
        assert db.scalar("SELECT duplicates FROM nodes WHERE id = 'rw-02'") >= 0
        row = db.one("SELECT events, min_seq, max_seq FROM nodes WHERE id = 'rw-02'")
        assert (row["events"], row["min_seq"], row["max_seq"]) == (150, 1, 150)
    finally:
        node.stop()
        worker.stop()


def _config(tmp_path: Path, db_url: str, broker_url: str) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n[mqtt]\nbroker = "{broker_url}"\n'
                    'client_id = "t-ingest-proc"\n')
    return path


def _ingest_process(config: Path) -> subprocess.Popen:
    with (config.parent / "ingest.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "central", "--config", str(config),
                                 "ingest"], cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = proc.stdout.readline().decode()
    if "running" not in line:
        proc.kill()
        proc.wait(10)
        raise AssertionError(f"the ingest did not start: {line}")
    return proc


@pytest.mark.slow
def test_kill_9_of_the_ingest_mid_burst_then_restart_loses_nothing(db, db_url, broker,
                                                                    tmp_path):
    config = _config(tmp_path, db_url, broker.url)
    proc = _ingest_process(config)
    nodes = [FakeNode(broker.port, f"rw-k{i}") for i in range(4)]
    try:
        sent = 0
        for _ in range(150):
            for node in nodes:
                node.send(node.event())
                sent += 1
        wait_for(lambda: count(db, "events") > 0, 15, "the ingest to start storing")
        proc.send_signal(signal.SIGKILL)  # mid-burst: some stored, some queued, some in flight
        proc.wait(10)
        at_kill = count(db, "events")
        for _ in range(100):  # the burst goes on while the ingest is down
            for node in nodes:
                node.send(node.event())
                sent += 1
        proc = _ingest_process(config)
        try:
            wait_for(lambda: count(db, "events") == sent, 60, f"all {sent} events")
        except AssertionError as exc:  # say whether events were lost or only slow to come
            raise AssertionError(f"{exc}: {count(db, 'events')} stored, {at_kill} at the kill,"
                                 f" ingest {'running' if proc.poll() is None else 'exited'}"
                                 ) from None
        assert at_kill < sent
        for node in nodes:
            row = db.one("SELECT events, min_seq, max_seq FROM nodes WHERE id = ?", (node.node,))
            assert (row["events"], row["min_seq"], row["max_seq"]) == (250, 1, 250)
    finally:
        for node in nodes:
            node.stop()
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_workers_share_the_events_none_lost_none_twice(db, broker):
    opts = ClientOptions(broker=broker.url)
    workers = [IngestWorker(db, opts, client_id=f"t-w{i}", group="central").start()
               for i in (1, 2)]
    nodes = [FakeNode(broker.port, f"rw-s{i}") for i in range(5)]
    try:
        assert all(w.wait_connected() for w in workers)
        for _ in range(100):
            for node in nodes:
                node.send(node.event())
        wait_for(lambda: count(db, "events") == 500, 30, "500 events")
        wait_for(lambda: sum(w.stored for w in workers) == 500, 10, "the workers' counts")
        assert all(w.stored > 50 for w in workers), [w.stored for w in workers]
        assert sum(w.duplicates for w in workers) == 0
        for node in nodes:
            row = db.one("SELECT events, min_seq, max_seq FROM nodes WHERE id = ?", (node.node,))
            assert (row["events"], row["min_seq"], row["max_seq"]) == (100, 1, 100)
    finally:
        for node in nodes:
            node.stop()
        for w in workers:
            w.stop()


def test_audit_log_refuses_update_and_delete(db):
    from central.auth import audit

    audit(db, "budi", "alarm.ack", "rw-01/a1", None, "ok")
    for sql in ("UPDATE audit SET result = 'changed'", "DELETE FROM audit"):
        with pytest.raises(Exception, match="append-only"), db.tx() as cur:
            cur.execute(sql)
    assert db.one("SELECT result FROM audit")["result"] == "ok"


@pytest.mark.slow
def test_a_shared_group_after_a_mosquitto_restart_shows_what_it_missed_as_lost(db, broker):
    """Mosquitto 2.0 forgets shared subscriptions on restart (docs/central.md): events sent
    before the group resubscribes never reach it, and the console says so."""
    worker = IngestWorker(db, ClientOptions(broker=broker.url), client_id="t-g",
                          group="central").start()
    assert worker.wait_connected()
    worker.client.reconnect_delay_set(6, 30)  # the nodes come back first
    node = FakeNode(broker.port, "rw-g")
    try:
        node.send(node.event())
        wait_for(lambda: count(db, "events") == 1, 10, "the first event")
        broker.restart()
        wait_for(lambda: node.client.is_connected(), 15, "the node to reconnect")
        for _ in range(5):
            node.send(node.event())
        wait_for(lambda: worker.connected.is_set(), 30, "the worker to reconnect")
        wait_for(lambda: node.client.is_connected(), 15, "the node")
        node.send(node.event())
        wait_for(lambda: count(db, "events") >= 2, 15, "the event after the resubscribe")
        row = db.one("SELECT * FROM nodes WHERE id = 'rw-g'")
        assert row["max_seq"] == 7
        assert views.lost(row) == 7 - count(db, "events")
    finally:
        node.stop()
        worker.stop()
