"""Helpers of the MQTT tests: a recording subscriber, schema checks, node configs."""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mqtt import schema
from tests.shared_broker import SharedBroker
from tests.waiting import wait_for


class Recorder:
    """A paho subscriber that keeps every message it gets, with its arrival time."""

    def __init__(self, port: int, topics: str | list[str] = "ronda/v1/#", *,
                 client_id: str = "", clean: bool = True, **tls: Any) -> None:
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self.lock = threading.Condition()
        self.topics = [topics] if isinstance(topics, str) else topics
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(0.1, 0.5)
        self.port = port
        self.subscribed = threading.Event()
        self._pending: set[int] = set()

    def _on_connect(self, client: paho.Client, *_: Any) -> None:
        with self.lock:
            self._pending = {client.subscribe(topic, qos=1)[1] for topic in self.topics}

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, *_: Any) -> None:
        with self.lock:
            self._pending.discard(mid)
            if not self._pending:  # every SUBACK is in: nothing published from now is missed
                self.subscribed.set()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), time.time()))
            self.lock.notify_all()

    def start(self) -> Recorder:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        sock = self.client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        assert self.subscribed.wait(15), "recorder did not connect and subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes, bool, float]]], Any],
                 timeout: float = 15.0, what: str = "messages") -> Any:
        """Wait until `predicate(messages)` is truthy; returns its value."""
        try:
            return wait_for(lambda: predicate(self.snapshot()), timeout, what, interval=0.2,
                            wake=self.lock)
        except AssertionError as exc:
            got = self.snapshot()
            raise AssertionError(f"{exc}; got {len(got)} messages: "
                                 f"{[m[0] for m in got[-10:]]}") from None

    def snapshot(self) -> list[tuple[str, bytes, bool, float]]:
        with self.lock:
            return list(self.messages)

    def payloads(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [m[1] for m in self.messages if m[0].endswith(suffix)]

    def json(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(p) for p in self.payloads(suffix)]


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    """A checked, reusable validator of mqtt/schemas/<name>.json."""
    schema_doc = schema.load(name)
    jsonschema.Draft202012Validator.check_schema(schema_doc)
    return jsonschema.Draft202012Validator(schema_doc)


def validate(name: str, doc: Any) -> None:
    """Fail (jsonschema.ValidationError) unless `doc` matches mqtt/schemas/<name>.json."""
    validator(name).validate(doc)


def node_config(tmp_path: Path, brokers: list[str] | SharedBroker, node: str = "rw05",
                **mqtt: Any) -> dict[str, Any]:
    """A config dict for a node without cameras, on broker URLs or on the session broker
    (then with this test's topic prefixes)."""
    section = brokers.mqtt(**mqtt) if isinstance(brokers, SharedBroker) \
        else {"brokers": brokers, **mqtt}
    return {"node": {"id": node, "data_dir": str(tmp_path / f"state-{node}")},
            "mqtt": section}


def write_toml(path: Path, data: dict[str, Any]) -> Path:
    import tomli_w

    path.write_bytes(tomli_w.dumps(data).encode())
    return path


class BridgeNode:
    """The mqtt area's wiring in this process: bus + system monitor + MqttBridge.

    Hermetic: no other area is built, so a command nobody handles times out.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        from firmware.bus import EventBus
        from firmware.config import parse
        from firmware.supervisor import Supervisor
        from firmware.wiring.mqtt import MqttBridge
        from firmware.wiring.system import SystemMonitor

        self.config = parse(config)
        self.config.node.data_dir.mkdir(parents=True, exist_ok=True)
        self.bus = EventBus()
        self.started = time.time()
        self.bridge = MqttBridge(self.config, self.bus, self.health, self.config.node.data_dir)
        self.supervisor = Supervisor([SystemMonitor(self.bus, interval_s=1.0), self.bridge])

    def health(self) -> dict[str, Any]:
        return {"node": self.config.node.id, "version": "test", "ts": time.time(),
                "uptime_s": time.time() - self.started,
                "components": self.supervisor.health(), "last_error": None}

    def __enter__(self) -> BridgeNode:
        self.bus.start()
        self.supervisor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.supervisor.stop()
        self.bus.stop()
        self.bridge.outbox.close()
