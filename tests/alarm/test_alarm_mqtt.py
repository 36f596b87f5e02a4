"""End to end through the real MQTT wiring and a real Mosquitto: a press reaches a
subscriber, a signed `ack` silences the siren, and with the broker down the panic
still drives the outputs (the event waits in the outbox)."""

from __future__ import annotations

import json
import threading

import jsonschema
import paho.mqtt.client as paho
import pytest
from alarm_kit import wait_for
from paho.mqtt.enums import CallbackAPIVersion

from devtools.broker import LocalBroker
from mqtt import schema
from mqtt.signing import generate_keypair, sign_command
from tests.shared_broker import SharedBroker

NODE = "test-rw05"


class Subscriber:
    """A Command Center stand-in: records every message under the node's root."""

    def __init__(self, port: int, root: str) -> None:
        self.root = root
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{root}/#", qos=1)
        self.client.on_subscribe = lambda *a: self.ready.set()  # SUBACK: nothing missed now
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.ready.wait(15), "the subscriber did not subscribe"

    def _message(self, _c, _u, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def docs(self, suffix: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def validate_all(self) -> int:
        """Check what the alarm causes (events, outputs, replies) against the MQTT schemas."""
        checked = 0
        with self.lock:
            messages = list(self.messages)
        for topic, payload, _ in messages:
            name = schema.for_topic(topic.removeprefix(f"{self.root}/"))
            if name in ("event", "output", "reply") and payload[:1] == b"{":
                doc = json.loads(payload)
                try:
                    jsonschema.validate(doc, schema.load(name))
                except jsonschema.ValidationError as exc:
                    raise AssertionError(f"{topic}: {exc.message}: {doc}") from None
                checked += 1
        return checked


@pytest.fixture
def keys():
    return generate_keypair()


def mqtt_section(broker: LocalBroker | SharedBroker, public: str) -> dict:
    prefix = {"prefix": broker.prefix} if isinstance(broker, SharedBroker) else {}
    return {"brokers": [broker.url], "command_keys": [public], "reconnect_min_s": 0.2,
            "reconnect_max_s": 1.0, **prefix}


@pytest.mark.slow
def test_press_reaches_the_command_center_and_a_signed_ack_silences(make_node, broker, keys):
    private, public = keys
    cc = Subscriber(broker.port, broker.root(NODE))
    try:
        node = make_node(mqtt=mqtt_section(broker, public))
        wait_for(lambda: node.ctx.shared["mqtt"].link.connected, 10, "the node's link")
        node.press()
        assert node.pin("siren").state is True
        event = wait_for(lambda: [d for d in cc.docs("/events") if d["type"] == "panic"], 10,
                         "the panic event at the subscriber")[0]
        assert event["phase"] == "raised" and event["source"] == "button:panic:pos"
        siren = wait_for(lambda: [d for d in cc.docs("/outputs/siren") if d["state"] == "panic"],
                         10, "the retained siren state")[0]
        assert siren["cause"] == "button:panic:pos"
        cmd = sign_command(private, node=NODE, action="ack",
                           args={"alarm_id": event["alarm_id"]})
        cc.client.publish(f"{cc.root}/cmd/ack", json.dumps(cmd), qos=1)
        reply = wait_for(lambda: [d for d in cc.docs("/reply") if d.get("id") == cmd["id"]], 10,
                         "the reply")[0]
        assert reply["ok"] is True, reply
        assert node.pin("siren").state is False
        cleared = wait_for(lambda: [d for d in cc.docs("/events") if d.get("phase") == "cleared"],
                           10, "the cleared event")[0]
        assert cleared["alarm_id"] == event["alarm_id"] and cleared["source"].startswith("cmd:")
        # the status LED learned the link state from the MQTT bridge
        wait_for(lambda: node.components[0].status.mode == "ok", 3, "status LED ok")
        # everything the alarm caused is valid against the MQTT area's published schemas
        assert cc.validate_all() >= 6
    finally:
        cc.stop()


@pytest.mark.slow
def test_broker_down_and_no_cameras_the_panic_still_drives_the_outputs(make_node, keys):
    _, public = keys
    broker = LocalBroker().start()  # its own: stopped, then back on the same port
    port = broker.port
    node = make_node(mqtt=mqtt_section(broker, public),
                     cameras=[{"name": "gang", "url": "rtsp://127.0.0.1:9/none"}])
    wait_for(lambda: node.ctx.shared["mqtt"].link.connected, 10, "the node's link")
    broker.stop()
    wait_for(lambda: not node.ctx.shared["mqtt"].link.connected, 10, "the link to drop")
    node.press()  # the outputs are driven in the press itself (how fast: bench/alarm.py)
    assert node.pin("siren").state is True and node.pin("light").state is True
    wait_for(lambda: node.ctx.shared["mqtt"].outbox.depth() >= 1, 5, "the event in the outbox")
    # the broker comes back: the stored panic event goes out. The node may reconnect and
    # flush before a subscriber started after the broker has subscribed (events are not
    # retained), so the proof is the broker's PUBACK: the outbox deletes an event only then.
    with LocalBroker(port=port):  # the broker back on its old port
        wait_for(lambda: node.ctx.shared["mqtt"].outbox.depth() == 0, 20,
                 "the stored panic event acknowledged by the returned broker")
