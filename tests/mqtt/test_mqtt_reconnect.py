"""The one reconnect policy against a real Mosquitto: a stored alarm wakes the link, a lost
connection backs off and moves to the next broker, a clone's takeover is reported."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mqtt_helpers import BridgeNode, node_config
from paho.mqtt.enums import CallbackAPIVersion

from devtools.broker import LocalBroker
from firmware.events import ObjectEvent, PanicEvent
from mqtt.link import TAKEN_OVER, Link
from mqtt.outbox import Outbox
from mqtt.settings import MqttSettings
from mqtt.topics import Topics
from support.backoff import Backoff
from tests.shared_broker import SharedBroker
from tests.waiting import wait_for

ROOT = "ronda/v1/rw05"


def test_stored_alarm_cuts_the_backoff_short(recorder_factory: Any, tmp_path: Path) -> None:
    """Broker back, panic a second later: delivered after about one connect, not after
    the 30 s the link was told to wait; an object event does not cut the wait."""
    broker = LocalBroker().start()  # its own: stopped and started again
    try:
        broker.stop()
        cfg = node_config(tmp_path, [broker.url], reconnect_min_s=30, reconnect_max_s=60)
        node = BridgeNode(cfg)
        node.bridge.link.backoff = Backoff(30, 60, min_s=30)  # no lucky short draw
        with node:
            wait_for(lambda: node.bridge.link.last_error, 15, "the first try to fail")
            broker.start()
            rec = recorder_factory(broker.port, f"{ROOT}/events")
            node.bus.publish(ObjectEvent(camera="gate", track_id="1", phase="start",
                                         label="person", score=0.9))
            time.sleep(1.0)  # on purpose: time for a wrong early connect to show
            assert node.bridge.link.connects == 0, "only an alarm cuts the backoff short"
            pressed = time.monotonic()
            node.bus.publish(PanicEvent(alarm_id="a1", kind="panic", phase="raised",
                                        source="button:panic"))
            rec.wait_for(lambda m: any(b'"panic"' in p for _, p, *_ in m), 10)
            took = time.monotonic() - pressed
            assert node.bridge.link.urgent_tries == 1
            assert node.bridge.health_document()["mqtt"]["last_error"] == "", \
                "the connect failures are over once connected"
            events = rec.json("/events")
    finally:
        broker.close()
    # Not a speed target (bench/mqtt.py has those): the link was told to wait 30 s, so
    # anything well under that shows the panic cut the backoff short.
    assert took < 20, f"panic took {took:.1f} s"
    assert [e["type"] for e in events] == ["object", "panic"], "outbox order kept"


def _link(url: str | list[str], box: Outbox, prefix: str = "ronda/v1", **kw: Any) -> Link:
    return Link(MqttSettings(brokers=[url] if isinstance(url, str) else url, **kw),
                Topics(prefix, "rw05"), box, health=lambda: {},
                on_command=lambda a, p: None)


def test_cloned_node_id_backs_off_and_says_so(broker: SharedBroker, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Two nodes with one id (a cloned card) used to knock each other off in a tight
    loop; now each takeover is reported and followed by a growing backoff."""
    caplog.set_level(logging.WARNING, logger="mqtt.link")
    boxes = [Outbox(tmp_path / f"{n}.sqlite3") for n in "ab"]
    links = [_link(broker.url, box, broker.prefix, reconnect_min_s=0.2, reconnect_max_s=2)
             for box in boxes]
    stop = threading.Event()
    threads = [threading.Thread(target=link.run, args=(stop,), daemon=True) for link in links]
    for thread in threads:
        thread.start()
    time.sleep(5)  # on purpose: the two clones fight for the id this long
    stop.set()
    for thread in threads:
        thread.join(10)
    for box in boxes:
        box.close()
    connects = [link.connects for link in links]
    assert sum(connects) < 30, f"fighting for the id: {connects} connects in 5 s"
    assert sum(link.takeovers for link in links) >= 1
    assert sum(link.stats()["takeovers"] for link in links) >= 1
    assert any(TAKEN_OVER in r.getMessage() for r in caplog.records)


def test_lost_connection_moves_to_the_next_broker(tmp_path: Path) -> None:
    """Connected to A, taken over there: the next try goes to B, not straight back to A."""
    with LocalBroker() as first, LocalBroker() as second:  # two: the failover is the point
        box = Outbox(tmp_path / "o.sqlite3")
        link = _link([first.url, second.url], box, reconnect_min_s=0.2, reconnect_max_s=0.5)
        stop = threading.Event()
        thread = threading.Thread(target=link.run, args=(stop,), daemon=True)
        thread.start()
        thief = paho.Client(CallbackAPIVersion.VERSION2, client_id=link.client_id,
                            protocol=paho.MQTTv5)
        try:
            wait_for(lambda: link.connected and link.broker == first.url, 15, "broker A")
            thief.connect("127.0.0.1", first.port)
            thief.loop_start()
            wait_for(lambda: link.connected and link.broker == second.url, 15,
                     "the move to broker B")
            assert link.connects == 2
        finally:
            stop.set()
            thread.join(10)
            thief.loop_stop()
            box.close()
