"""Commands when the disk misbehaves, and the replay memory's bound, through a real
broker and a real SQLite outbox."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from mqtt_helpers import BridgeNode, node_config

from firmware.events import Command
from mqtt.signing import sign_command
from tests.shared_broker import SharedBroker


def _disk_full(db: sqlite3.Connection) -> None:
    """No page may be added any more, and the free slots are used up."""
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    i = 0
    for size in (400, 100, 40, 10, 1):
        while True:
            i += 1
            try:
                db.execute("INSERT INTO seen_commands VALUES (?, 1e18)", ("p" * size + str(i),))
            except sqlite3.Error:
                break


def test_full_disk_command_still_acted_on_and_answered(broker: SharedBroker,
                                                        recorder_factory: Any, tmp_path: Path,
                                                        keypair: Any) -> None:
    root = broker.root("rw05")
    private, public = keypair
    rec = recorder_factory(broker.port, f"{root}/#")
    cfg = node_config(tmp_path, broker, command_keys=[public], command_timeout_s=1.0)
    with BridgeNode(cfg) as node:
        rec.wait_for(lambda m: any(p == b"online" for _, p, *_ in m))
        acted: list[Command] = []
        node.bus.subscribe(Command, lambda c: (acted.append(c), c.reply(True, "siren off", {})),
                           name="owner")
        _disk_full(node.bridge.outbox._db)
        cmd = sign_command(private, node="rw05", action="siren", args={"state": "off"})
        body = json.dumps(cmd).encode()
        rec.client.publish(f"{root}/cmd/siren", body, qos=1)
        reply = rec.wait_for(lambda m: [r for r in rec.json("/reply") if r["id"] == cmd["id"]])
        assert reply[0]["ok"] and [c.id for c in acted] == [cmd["id"]]
        assert node.bridge.health()["command_ids_not_persisted"] == 1
        rec.client.publish(f"{root}/cmd/siren", body, qos=1)  # the memory still refuses a replay
        second = rec.wait_for(lambda m: len([r for r in rec.json("/reply")
                                             if r["id"] == cmd["id"]]) == 2 and
                              [r for r in rec.json("/reply") if r["id"] == cmd["id"]])
        assert second[1]["message"] == "replayed command id" and len(acted) == 1


def test_seen_command_ids_pruned_while_running(tmp_path: Path, keypair: Any) -> None:
    from firmware.bus import EventBus
    from firmware.config import parse
    from firmware.wiring.mqtt import MqttBridge

    private, public = keypair
    state = tmp_path / "state"
    config = parse({"node": {"id": "rw05", "data_dir": str(state)},
                    "mqtt": {"brokers": ["mqtt://127.0.0.1:1"], "command_keys": [public]}})
    state.mkdir()
    bridge = MqttBridge(config, EventBus(), lambda: {}, state)
    try:
        db = bridge.outbox._db
        db.execute("INSERT INTO seen_commands VALUES ('ancient', ?)", (time.time() - 3600,))
        cmd = sign_command(private, node="rw05", action="ping")
        assert bridge.verifier.verify("ping", json.dumps(cmd).encode()).ok
        ids = [r[0] for r in db.execute("SELECT id FROM seen_commands")]
        assert ids == [cmd["id"]], "ids older than the window are forgotten while running"
    finally:
        bridge.outbox.close()
