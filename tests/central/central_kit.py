"""Helpers of the central tests: a simulated node that publishes contract payloads."""

from __future__ import annotations

import time
import uuid
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mqtt.link import encode
from mqtt.payloads import event_payload, health_payload, output_payload
from mqtt.topics import Topics


class FakeNode:
    """A node's MQTT side only (QoS 1, its own seq), for ingest tests."""

    def __init__(self, port: int, node: str, prefix: str = "ronda/v1") -> None:
        self.node = node
        self.topics = Topics(prefix, node)
        self.seq = 0
        self.port = port
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fake-{node}",
                                  protocol=paho.MQTTv5)
        self.client.will_set(self.topics.status, b"offline", qos=1, retain=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.publish(self.topics.status, b"online", qos=1, retain=True)

    def event(self, type_: str = "object", **fields: Any) -> dict[str, Any]:
        self.seq += 1
        event_id = uuid.uuid4().hex
        base: dict[str, Any] = {"id": event_id, "ts": time.time(), "type": type_,
                                "camera": None}
        if type_ == "object":
            base.update(track_id=str(self.seq), phase="start", label="person", score=0.9,
                        camera="gang")
        elif type_ in ("panic", "alarm"):
            base.update(alarm_id=event_id, kind="panic" if type_ == "panic" else "fire",
                        phase="raised", source="button:pos", presses=1)
        base.update(fields)
        doc = {**event_payload(base, self.node, self.topics, False), "seq": self.seq}
        return doc

    def send(self, doc: dict[str, Any]) -> paho.MQTTMessageInfo:
        return self.client.publish(self.topics.events, encode(doc), qos=1)

    def health(self, **extra: Any) -> None:
        report = {"node": self.node, "version": "test", "ts": time.time(), "uptime_s": 5.0,
                  "components": {"system": {"cpu_percent": 12.0, "temperature_c": 55.0,
                                            "throttled": [], "clock_synced": True}},
                  "last_error": None}
        doc = {**health_payload(report, mqtt={"connected": True},
                                outbox={"depth": 0, "bytes": 0, "drops": 0}), **extra}
        self.client.publish(self.topics.health, encode(doc), qos=1, retain=True)

    def output(self, name: str, state: str, cause: str = "test") -> None:
        doc = output_payload(name, state, cause, time.time(), None)
        self.client.publish(self.topics.output(name), encode(doc), qos=1, retain=True)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
