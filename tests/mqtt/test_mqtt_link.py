"""The mqtt wiring against a real Mosquitto: the topic contract, retained state, failover."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import jsonschema
from mqtt_helpers import BridgeNode, node_config, validate

from devtools.broker import LocalBroker, free_port
from firmware.events import ObjectEvent, OutputChanged, PanicEvent, Snapshot, StorageEvent
from tests.shared_broker import SharedBroker
from tests.waiting import wait_for

ROOT = "ronda/v1/rw05"  # on a broker of the test's own (the default prefix)
HA_SCHEMA = Path(__file__).with_name("ha_discovery.schema.json")
# A broker that keeps the test subscriber's session (and its queued QoS 1 messages) over
# its own restart. `user root`: run as root, Mosquitto otherwise drops to the `mosquitto`
# user, which cannot write its persistence file into the 0700 temporary directory.
PERSISTENT_BROKER = "max_queued_messages 0\nuser root"


def test_topic_contract(broker: SharedBroker, recorder_factory: Any, tmp_path: Path) -> None:
    ROOT = broker.root("rw05")  # the module's ROOT, on the shared broker
    rec = recorder_factory(broker.port, f"{broker.prefix}/#")
    with BridgeNode(node_config(tmp_path, broker, health_interval_s=1)) as node:
        rec.wait_for(lambda m: (f"{ROOT}/status", b"online") in [(t, p) for t, p, *_ in m])
        node.bus.publish(ObjectEvent(camera="gate", track_id="t1", phase="start",
                                     label="person", score=0.91, box=(0.1, 0.2, 0.3, 0.4),
                                     snapshot=b"\xff\xd8event-jpeg"))
        node.bus.publish(PanicEvent(alarm_id="a1", kind="panic", phase="raised",
                                    source="button:panic"))
        node.bus.publish(StorageEvent(state="degraded", reason="disk full", detail={"free": 0}))
        node.bus.publish(Snapshot(camera="gate", jpeg=b"\xff\xd8cam-jpeg"))
        node.bus.publish(OutputChanged(name="siren", state="on", cause="button:panic",
                                       until=time.time() + 60))
        rec.wait_for(lambda m: len([x for x in m if x[0] == f"{ROOT}/events"]) >= 3)
        rec.wait_for(lambda m: len([x for x in m if x[0] == f"{ROOT}/health"]) >= 2, 10)
        rec.wait_for(lambda m: any(x[0] == f"{ROOT}/outputs/siren" for x in m))
    rec.wait_for(lambda m: m[-1][:2] == (f"{ROOT}/status", b"offline"))

    events = rec.json("/events")
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert [e["type"] for e in events] == ["object", "panic", "storage"]
    assert len({e["id"] for e in events}) == 3
    for event in events:
        validate("event", event)
        assert event["node"] == "rw05"
    person = events[0]
    assert person["camera"] == "gate" and person["box"] == [0.1, 0.2, 0.3, 0.4]
    assert person["snapshot"] == f"{ROOT}/events/{person['id']}/snapshot"
    topics = [m[0] for m in rec.messages]
    assert topics.index(person["snapshot"]) < topics.index(f"{ROOT}/events"), \
        "the event's JPEG is sent before the event"
    assert rec.payloads(person["snapshot"]) == [b"\xff\xd8event-jpeg"]
    assert events[1]["snapshot"] is None
    for doc in rec.json("/health"):
        validate("health", doc)
    health = rec.json("/health")[-1]
    assert health["node"] == "rw05" and health["mqtt"]["connected"] is True
    assert health["cameras"] == {} and health["storage"] is None  # areas not configured
    assert health["cpu_percent"] is not None and health["outbox"]["drops"] == 0
    output = rec.json("/outputs/siren")[-1]
    validate("output", output)
    assert output["state"] == "on" and output["cause"] == "button:panic"

    # What a Command Center subscribing later sees: the retained state.
    late = recorder_factory(broker.port, f"{broker.prefix}/#")
    retained = late.wait_for(lambda m: {t: p for t, p, r, _ in m if r} if len(m) >= 4 else None)
    assert retained[f"{ROOT}/status"] == b"offline"
    assert retained[f"{ROOT}/cameras/gate/snapshot"] == b"\xff\xd8cam-jpeg"
    assert json.loads(retained[f"{ROOT}/outputs/siren"])["state"] == "on"
    validate("health", json.loads(retained[f"{ROOT}/health"]))
    assert not any(t.endswith("/events") for t in retained)


def test_failover_and_outage(recorder_factory: Any, tmp_path: Path) -> None:
    dead = f"mqtt://127.0.0.1:{free_port()}"
    with LocalBroker(extra_config=PERSISTENT_BROKER, persistence=True) as broker:  # stopped
        rec = recorder_factory(broker.port, client_id="cc-test", clean=False)
        cfg = node_config(tmp_path, [dead, broker.url], reconnect_min_s=0.2,
                          reconnect_max_s=0.5)
        with BridgeNode(cfg) as node:
            rec.wait_for(lambda m: any(p == b"online" for _, p, *_ in m))
            assert node.bridge.link.broker == broker.url
            broker.stop()
            for i in range(50):
                node.bus.publish(ObjectEvent(track_id=str(i), phase="start", label="person",
                                             score=0.5, camera="gate",
                                             snapshot=b"\xff\xd8outage" if i == 7 else None))
            wait_for(lambda: node.bridge.outbox.depth() >= 50, 15, "50 events in the outbox")
            assert node.bridge.outbox.depth() == 50
            broker.start()
            events = rec.wait_for(lambda m: len({json.loads(p)["seq"] for t, p, *_ in m
                                                 if t.endswith("/events")}) >= 50 and m, 15)
            wait_for(lambda: node.bridge.outbox.depth() == 0, 15,
                     "acknowledged events to leave the outbox")
    seqs = [json.loads(p)["seq"] for t, p, *_ in events if t.endswith("/events")]
    assert sorted(set(seqs)) == list(range(1, 51))
    eighth = next(json.loads(p) for t, p, *_ in events
                  if t.endswith("/events") and json.loads(p)["seq"] == 8)
    topics = [t for t, *_ in events]
    assert eighth["snapshot"] in topics, "the event's JPEG is kept in the outbox too"
    at = next(i for i, (t, p, *_) in enumerate(events)
              if t.endswith("/events") and json.loads(p)["seq"] == 8)
    assert topics.index(eighth["snapshot"]) == at - 1, "JPEG right before its event"



def test_online_and_health_republished_on_every_connect(recorder_factory: Any,
                                                        tmp_path: Path) -> None:
    with LocalBroker() as broker:  # no persistence: a restart forgets retained messages
        cfg = node_config(tmp_path, [broker.url], reconnect_min_s=0.2, reconnect_max_s=0.5)
        with BridgeNode(cfg) as node:
            wait_for(lambda: node.bridge.link.connected, 15, "the first connection")
            broker.restart()
            wait_for(lambda: node.bridge.link.connects >= 2, 20, "the reconnection")
            assert node.bridge.link.connects == 2
            late = recorder_factory(broker.port, [f"{ROOT}/status", f"{ROOT}/health"])
            # both retained topics, not just two messages (status may come twice)
            got = late.wait_for(lambda m: d if len(d := {t: p for t, p, r, _ in m if r}) >= 2
                                else None, 10)
    assert got[f"{ROOT}/status"] == b"online"
    validate("health", json.loads(got[f"{ROOT}/health"]))


def test_homeassistant_discovery(broker: SharedBroker, recorder_factory: Any,
                                 tmp_path: Path) -> None:
    ha = broker.ha_prefix  # 'homeassistant' by default
    rec = recorder_factory(broker.port, f"{ha}/#")
    with BridgeNode(node_config(tmp_path, broker, homeassistant=True)):
        got = rec.wait_for(lambda m: m if len(m) >= 5 else None)
        rec.client.publish(f"{ha}/status", b"online", qos=1)  # HA restarted
        rec.wait_for(lambda m: len(m) >= 11, 10)  # 5 configs + HA's status + 5 again
    configs = {t: json.loads(p) for t, p, *_ in got if t.endswith("/config")}
    assert set(configs) == {f"{ha}/{c}/rw05/{o}/config" for c, o in [
        ("binary_sensor", "status"), ("binary_sensor", "panic"), ("binary_sensor", "person"),
        ("sensor", "storage"), ("sensor", "temperature")]}
    ha_schema = jsonschema.Draft202012Validator(json.loads(HA_SCHEMA.read_text()))
    for topic, conf in configs.items():
        assert conf["unique_id"].startswith("ronda_rw05_")
        assert "command_topic" not in conf  # read-only
        ha_schema.validate(conf)  # current format: default_entity_id, no object_id
        component = topic[len(ha) + 1:].split("/")[0]
        assert conf["default_entity_id"].startswith(f"{component}.ronda_rw05_")
        assert re.fullmatch(rf"{re.escape(ha)}/\w+/[\w-]+/[\w-]+/config", topic)
    assert configs[f"{ha}/binary_sensor/rw05/panic/config"]["availability_topic"] == \
        f"{broker.root('rw05')}/status"


def test_outbox_bound_counts_drops_in_health(tmp_path: Path) -> None:
    cfg = node_config(tmp_path, [f"mqtt://127.0.0.1:{free_port()}"], outbox_max_events=10)
    with BridgeNode(cfg) as node:
        for i in range(15):
            node.bus.publish(ObjectEvent(track_id=str(i), phase="start", label="car", score=1))
        node.bus.publish(PanicEvent(alarm_id="p", kind="panic", phase="raised", source="t"))
        wait_for(lambda: node.bridge.events_stored >= 16, 15, "16 events stored")
        doc = node.bridge.health_document()
    validate("health", doc)
    assert doc["outbox"]["depth"] == 10 and doc["outbox"]["drops"] == 6
    assert doc["mqtt"]["connected"] is False and "127.0.0.1" in doc["mqtt"]["last_error"]


def test_full_outbox_over_outage_keeps_panics(recorder_factory: Any, tmp_path: Path) -> None:
    with LocalBroker(extra_config=PERSISTENT_BROKER, persistence=True) as broker:  # stopped
        rec = recorder_factory(broker.port, f"{ROOT}/events", client_id="cc-full", clean=False)
        cfg = node_config(tmp_path, [broker.url], reconnect_min_s=0.2, reconnect_max_s=0.5,
                          outbox_max_events=40)
        with BridgeNode(cfg) as node:
            wait_for(lambda: node.bridge.link.connected, 15, "the connection")
            broker.stop()
            for i in range(60):
                if i % 10 == 0:
                    node.bus.publish(PanicEvent(alarm_id=f"p{i}", kind="panic",
                                                phase="raised", source="button:panic"))
                node.bus.publish(StorageEvent(state="degraded", reason=f"r{i}"))
            wait_for(lambda: node.bridge.events_stored >= 66, 15, "66 events stored")
            health = node.bridge.health_document()
            assert health["outbox"]["depth"] == 40 and health["outbox"]["drops"] == 26
            broker.start()
            rec.wait_for(lambda m: len(m) >= 40, 20)
    events = rec.json("/events")
    assert len({e["id"] for e in events}) == 40
    assert sum(e["type"] == "panic" for e in events) == 6, "every panic survived"
    storage = [e for e in events if e["type"] == "storage"]
    assert [e["reason"] for e in storage] == [f"r{i}" for i in range(26, 60)], \
        "the oldest low-priority events were dropped"
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and seqs[-1] == 66, "dropped events show as seq gaps"
