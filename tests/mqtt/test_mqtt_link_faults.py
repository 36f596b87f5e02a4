"""The link against a real Mosquitto when the connection misbehaves."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from devtools.broker import LocalBroker
from mqtt.link import Link
from mqtt.outbox import Outbox
from mqtt.settings import MqttSettings
from mqtt.topics import Topics
from tests.shared_broker import SharedBroker
from tests.waiting import wait_for


def test_connection_lost_between_connack_and_use_reconnects(broker: SharedBroker,
                                                             recorder_factory: Any,
                                                             tmp_path: Path) -> None:
    """The connection is taken over right after CONNACK, before the link marks itself
    connected: it used to stay "connected" for ever, delivering nothing."""
    rec = recorder_factory(broker.port, f"{broker.root('rw05')}/events")
    box = Outbox(tmp_path / "o.sqlite3")
    link = Link(MqttSettings(brokers=[broker.url], reconnect_min_s=0.2, reconnect_max_s=0.5),
                Topics(broker.prefix, "rw05"), box, health=lambda: {},
                on_command=lambda a, p: None)
    real, first = link._on_connected, [True]

    def late(client: Any, *args: Any) -> Any:
        if first[0]:
            first[0] = False  # another client takes our id over, then vanishes
            thief = paho.Client(CallbackAPIVersion.VERSION2, client_id=link.client_id)
            thief.connect("127.0.0.1", broker.port)
            thief.loop_start()
            deadline = time.monotonic() + 5
            while client.is_connected() and time.monotonic() < deadline:
                time.sleep(0.02)  # a poll inside the link's own callback: no wait_for
            thief.loop_stop()
            thief.socket().close()
        return real(client, *args)

    link._on_connected = late  # type: ignore[method-assign]
    box.put("panic-1", 2, {"type": "panic"})
    stop = threading.Event()
    thread = threading.Thread(target=link.run, args=(stop,), daemon=True)
    thread.start()
    try:
        rec.wait_for(lambda m: m, timeout=10)
        wait_for(lambda: box.depth() == 0, 10, "the outbox to empty")
        assert box.depth() == 0 and link.connected and link.connects >= 1
    finally:
        stop.set()
        thread.join(10)
        box.close()


def test_refused_event_kept_and_sent_again(tmp_path: Path) -> None:
    """PUBACK 0x87 (the broker's ACL refuses `events`): the panic is kept, health says
    why, and it goes out once the ACL is fixed (Mosquitto reloads it on SIGHUP)."""
    import signal

    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ronda/v1/rw05/status\ntopic readwrite ronda/v1/rw05/health\n"
                   "topic read ronda/v1/rw05/cmd/#\ntopic read ronda/v1/rw05/events\n")
    with LocalBroker(extra_config=f"acl_file {acl}") as broker:  # its own: ACL, SIGHUP
        got: list[bytes] = []
        sub = paho.Client(CallbackAPIVersion.VERSION2, client_id="cc")
        sub.on_message = lambda c, u, m: got.append(m.payload)
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("ronda/v1/rw05/events", 1)
        sub.loop_start()
        box = Outbox(tmp_path / "o.sqlite3")
        link = Link(MqttSettings(brokers=[broker.url], reconnect_min_s=0.2, reconnect_max_s=0.4),
                    Topics("ronda/v1", "rw05"), box, health=lambda: {},
                    on_command=lambda a, p: None)
        box.put("panic-1", 2, {"type": "panic"})
        stop = threading.Event()
        thread = threading.Thread(target=link.run, args=(stop,), daemon=True)
        thread.start()
        try:
            wait_for(lambda: link.stats()["refusals"] >= 2, 15, "two refusals")
            stats = link.stats()
            assert box.depth() == 1, "a refused panic must stay in the outbox"
            assert stats["refusals"] >= 2, "and be tried again"
            assert "not authorized" in stats["last_error"] and not got
            acl.write_text(acl.read_text() + "topic write ronda/v1/rw05/#\n")
            broker.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: not box.depth() and got, 15, "the panic delivered")
            assert box.depth() == 0 and len(got) == 1 and b'"seq":1' in got[0]
            assert link.stats()["refused_waiting"] == 0 and not link.last_error
        finally:
            stop.set()
            thread.join(10)
            sub.loop_stop()
            box.close()


def test_every_refused_publish_is_counted_per_kind_and_logged_once(
        tmp_path: Path, caplog: Any) -> None:
    """An ACL that lets only status and events through: discovery, health, outputs and
    camera snapshots are refused (MQTT 5 PUBACK 0x87). Each kind is counted in health and
    logged once with the broker's reason; events still flow."""
    import json
    import logging

    from mqtt_helpers import BridgeNode, node_config, validate

    from firmware.events import OutputChanged, PanicEvent, Snapshot

    caplog.set_level(logging.ERROR, logger="mqtt.link")
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite ronda/v1/rw05/status\ntopic readwrite ronda/v1/rw05/events\n"
                   "topic read ronda/v1/rw05/cmd/#\ntopic read homeassistant/status\n")
    with LocalBroker(extra_config=f"acl_file {acl}") as broker:  # its own: an ACL
        cfg = node_config(tmp_path, [broker.url], homeassistant=True, health_interval_s=1)
        with BridgeNode(cfg) as node:
            wait_for(lambda: node.bridge.link.connected, 15, "the connection")
            node.bus.publish(Snapshot(camera="gate", jpeg=b"\xff\xd8"))
            node.bus.publish(OutputChanged(name="siren", state="on", cause="test"))
            node.bus.publish(PanicEvent(alarm_id="a", kind="panic", phase="raised", source="t"))
            want = {"discovery", "health", "camera_snapshot", "outputs"}
            wait_for(lambda: (want <= set(node.bridge.link.refused)
                              and node.bridge.link.refused.get("health", 0) >= 2
                              and not node.bridge.outbox.depth()), 20, "every kind refused")
            doc = node.bridge.health_document()
    refused = doc["mqtt"]["refused"]
    assert refused["discovery"] == 5 and refused["camera_snapshot"] == 1
    assert refused["outputs"] == 1 and refused["health"] >= 2
    assert "events" not in refused and doc["outbox"]["depth"] == 0, "events still delivered"
    assert "Not authorized" in doc["mqtt"]["last_error"]
    lines = [r.getMessage() for r in caplog.records if "broker refused a publish" in r.getMessage()]
    kinds = [line.split("publish to ")[1].split(":")[0] for line in lines]
    assert sorted(kinds) == sorted(want), "one line per kind"
    assert all("Not authorized (0x87)" in line for line in lines)
    validate("health", json.loads(json.dumps(doc)))  # as published
