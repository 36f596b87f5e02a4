"""The link against a real Mosquitto when the connection misbehaves."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from firmware.devtools.broker import LocalBroker
from mqtt.link import Link
from mqtt.outbox import Outbox
from mqtt.settings import MqttSettings
from mqtt.topics import Topics


def test_connection_lost_between_connack_and_use_reconnects(broker: LocalBroker,
                                                             recorder_factory: Any,
                                                             tmp_path: Path) -> None:
    """The connection is taken over right after CONNACK, before the link marks itself
    connected: it used to stay "connected" for ever, delivering nothing."""
    rec = recorder_factory(broker.port, "ronda/v1/rw05/events")
    box = Outbox(tmp_path / "o.sqlite3")
    link = Link(MqttSettings(brokers=[broker.url], reconnect_min_s=0.2, reconnect_max_s=0.5),
                Topics("ronda/v1", "rw05"), box, health=lambda: {},
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
                time.sleep(0.02)
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
        deadline = time.monotonic() + 5
        while box.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.depth() == 0 and link.connected and link.connects >= 1
    finally:
        stop.set()
        thread.join(10)
        box.close()
