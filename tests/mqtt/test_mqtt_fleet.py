"""The fleet simulator on a real broker, and the watcher's bookkeeping."""

from __future__ import annotations

import json
from typing import Any

from mqtt_helpers import validate

from central.devtools.fleet_sim import FleetSim
from central.mqtt_client import ClientOptions
from central.tools.watch import FleetState
from tests.shared_broker import SharedBroker


def test_fleet_sim_zero_loss_wills_and_valid_payloads(broker: SharedBroker,
                                                      recorder_factory: Any) -> None:
    rec = recorder_factory(broker.port, [f"{broker.prefix}/+/events",
                                         f"{broker.prefix}/+/health"])
    result = FleetSim(ClientOptions(broker=broker.url), nodes=40, rate_per_node=2.0,
                      duration_s=2.0, crash_fraction=0.25, seed=7, prefix=broker.prefix).run()
    assert result.ok, result
    assert result.connected == 40 and result.online_seen == 40
    assert result.sent > 60 and result.received == result.sent and result.lost == 0
    assert result.crashed == 10 and result.wills_seen == 10
    assert result.latency_ms(50) is not None  # how fast: bench/mqtt.py fleet_latency_p99
    rec.wait_for(lambda m: len([x for x in m if x[0].endswith("/events")]) >= result.sent)
    for doc in rec.json("/events")[:100]:
        validate("event", doc)
    healths = rec.wait_for(lambda m: rec.json("/health"), 15, "a health report")
    for doc in healths[:20]:
        validate("health", doc)


def test_watch_state_counts_gaps_duplicates_and_status() -> None:
    state = FleetState("ronda/v1")
    state.handle("ronda/v1/rw05/status", b"online", now=100.0)
    for seq, event_id in [(1, "a"), (2, "b"), (2, "b"), (5, "e")]:
        state.handle("ronda/v1/rw05/events",
                     json.dumps({"id": event_id, "seq": seq, "type": "object"}).encode())
    state.handle("ronda/v1/rw05/health", b'{"cpu_percent": 12.5}')
    state.handle("ronda/v1/rw05/events", b"not json")
    state.handle("elsewhere/rw05/status", b"offline")
    (view,) = state.rows()
    assert (view.node, view.status, view.events, view.duplicates, view.gaps, view.last_seq) == \
        ("rw05", "online", 3, 1, 2, 5)
    assert view.health == {"cpu_percent": 12.5}
