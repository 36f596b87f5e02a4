"""MQTT bench: event latency through the node's durable path, and a 1,000-node fleet.

Figures (one line each: name<TAB>value<TAB>unit<TAB>note):

- ``baseline_paho_qos1_*``: bare paho, QoS 1 publish -> a subscriber on loopback: the floor;
- ``event_latency_*``: the node's path: `EventBus.publish(Event)` -> SQLite outbox
  (synchronous=FULL, one fsync per event) -> QoS 1 publish -> Mosquitto -> subscriber,
  at `--rate` events/s (the event's `ts` is taken when it is created);
- ``burst_*``: 1,000 events put on the bus at once (what a node does after an outage);
- ``outage_drain_*``: 1,000 events stored while the broker is down, time from the broker's
  return to the last one received;
- ``panic_after_outage_*``: `--panic-nodes` nodes with the default reconnect backoff (1 s
  doubling to 60 s), broker down `--outage-s`, back, a panic on each node one second later:
  press -> Command Center delivery. ``panic_after_outage_nowake_*`` is the baseline in the
  same run: the same with the alarm's wake-up switched off (as before issue 12: the panic
  waits out the backoff);
- ``fleet_*``: `--nodes` simulated nodes (default 1,000) on one local Mosquitto: loss,
  seq gaps, wills, p50/p99 latency, broker CPU seconds; ``fleet_idle_*`` is the same
  fleet connected without events (baseline of the broker's cost of holding sessions);
- CPU seconds of this process per phase and its peak RSS.

Example::

    .venv/bin/python bench/mqtt.py                # about 3 minutes
    .venv/bin/python bench/mqtt.py --nodes 200 --fleet-s 5 --events 500
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from central.devtools.fleet_sim import FleetSim  # noqa: E402
from central.mqtt_client import ClientOptions  # noqa: E402
from devtools.broker import LocalBroker  # noqa: E402
from firmware.bus import EventBus  # noqa: E402
from firmware.config import parse  # noqa: E402
from firmware.events import ObjectEvent, PanicEvent  # noqa: E402
from firmware.supervisor import Supervisor  # noqa: E402
from firmware.wiring.mqtt import MqttBridge  # noqa: E402

PROC = psutil.Process()
NODE = "bench-rw05"


def emit(name: str, value: float | None, unit: str, note: str = "") -> None:
    shown = "nan" if value is None else f"{value:.3f}"
    print(f"{name}\t{shown}\t{unit}\t{note}", flush=True)


def cpu_s() -> float:
    times = PROC.cpu_times()
    return times.user + times.system


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class Subscriber:
    """Records the arrival time of each event id."""

    def __init__(self, port: int, topic: str, client_id: str = "", clean: bool = True) -> None:
        self.arrived: dict[str, float] = {}
        self.sent_ts: dict[str, float] = {}
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=clean)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        time.sleep(0.3)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        doc = json.loads(msg.payload)
        with self.cond:
            if doc["id"] not in self.arrived:
                self.arrived[doc["id"]] = now
                self.sent_ts[doc["id"]] = doc["ts"]
            self.cond.notify_all()

    def wait_count(self, count: int, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.arrived) < count:
                if time.monotonic() > deadline:
                    return False
                self.cond.wait(0.2)
        return True

    def latencies_ms(self) -> list[float]:
        with self.cond:
            return [(self.arrived[i] - self.sent_ts[i]) * 1000 for i in self.arrived]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Node:
    """The mqtt area's real wiring (MqttBridge + bus), as the daemon builds it."""

    def __init__(self, broker_url: str, state: Path, node: str = NODE,
                 reconnect: tuple[float, float] = (0.2, 0.5)) -> None:
        cfg = parse({"node": {"id": node, "data_dir": str(state)},
                     "mqtt": {"brokers": [broker_url], "reconnect_min_s": reconnect[0],
                              "reconnect_max_s": reconnect[1]}})
        self.bus = EventBus()
        self.bridge = MqttBridge(cfg, self.bus, lambda: {"node": node, "components": {}},
                                 state)
        self.supervisor = Supervisor([self.bridge])
        self.bus.start()
        self.supervisor.start()
        deadline = time.monotonic() + 10
        while not self.bridge.link.connected and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.supervisor.stop()
        self.bus.stop()


def event(n: int) -> ObjectEvent:
    return ObjectEvent(camera="gate", track_id=str(n), phase="start", label="person",
                       score=0.9, box=(0.1, 0.2, 0.3, 0.4))


def paced(count: int, rate: float, send: Any) -> None:
    start = time.monotonic()
    for n in range(count):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        send(n)


def bench_baseline(broker: LocalBroker, count: int, rate: float) -> None:
    sub = Subscriber(broker.port, "bench/raw")
    pub = paho.Client(CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    time.sleep(0.2)
    cpu0 = cpu_s()

    def send(n: int) -> None:
        pub.publish("bench/raw", json.dumps({"id": f"raw{n}", "ts": time.time(), "seq": n}),
                    qos=1)

    paced(count, rate, send)
    sub.wait_count(count)
    lat = sub.latencies_ms()
    emit("baseline_paho_qos1_p50", pct(lat, 50), "ms", f"{count} msgs at {rate:.0f}/s")
    emit("baseline_paho_qos1_p99", pct(lat, 99), "ms", "no outbox, no fsync")
    emit("baseline_paho_qos1_cpu", (cpu_s() - cpu0) / count * 1e6, "us/msg", "pub+sub process")
    pub.disconnect()
    pub.loop_stop()
    sub.close()


def bench_node(broker: LocalBroker, count: int, rate: float, tmp: Path) -> None:
    sub = Subscriber(broker.port, f"ronda/v1/{NODE}/events")
    node = Node(broker.url, tmp / "latency")
    cpu0 = cpu_s()
    paced(count, rate, lambda n: node.bus.publish(event(n)))
    ok = sub.wait_count(count)
    lat = sub.latencies_ms()
    emit("event_latency_p50", pct(lat, 50), "ms", f"{count} events at {rate:.0f}/s")
    emit("event_latency_p99", pct(lat, 99), "ms", "bus->SQLite fsync->QoS1->subscriber")
    emit("event_latency_max", pct(lat, 100), "ms", "" if ok else "SOME MISSING")
    emit("event_cpu", (cpu_s() - cpu0) / count * 1e6, "us/event", "node+subscriber process")

    before = len(sub.arrived)
    t0 = time.monotonic()
    cpu0 = cpu_s()
    for n in range(1000):
        node.bus.publish(event(n))
    sub.wait_count(before + 1000)
    wall = time.monotonic() - t0
    emit("burst_1000_events", wall, "s", f"{1000 / wall:.0f} events/s end to end")
    emit("burst_cpu", cpu_s() - cpu0, "cpu_s", "1000 events")
    emit("burst_commits", node.bridge.writer.batches, "transactions",
         "group commit: one fsync per batch, all phases so far")

    before = len(sub.arrived)
    for n in range(500):
        node.bus.publish(event(n))
    panic = PanicEvent(alarm_id="bench", kind="panic", phase="raised", source="bench")
    node.bus.publish(panic)
    sub.wait_count(before + 501)
    with sub.cond:
        panic_ms = (sub.arrived[panic.id] - panic.ts) * 1000
    emit("panic_behind_500_events", panic_ms, "ms", "panic published right after a burst")
    node.close()
    sub.close()


def bench_outage(tmp: Path) -> None:
    with LocalBroker(extra_config="max_queued_messages 0\nuser root",
                     persistence=True) as broker:
        sub = Subscriber(broker.port, f"ronda/v1/{NODE}/events", client_id="bench-cc",
                         clean=False)
        node = Node(broker.url, tmp / "outage")
        broker.stop()
        for n in range(1000):
            node.bus.publish(event(n))
        deadline = time.monotonic() + 30
        while node.bridge.events_stored < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        t0 = time.monotonic()
        cpu0 = cpu_s()
        broker.start()
        ok = sub.wait_count(1000, 60)
        wall = time.monotonic() - t0
        emit("outage_drain_1000", wall, "s",
             "broker back -> last event received (includes reconnect backoff)"
             + ("" if ok else " SOME MISSING"))
        emit("outage_drain_cpu", cpu_s() - cpu0, "cpu_s", "node+subscriber process")
        node.close()
        sub.close()


def bench_panic_after_outage(tmp: Path, nodes: int, outage_s: float) -> None:
    for label, wake in (("panic_after_outage_nowake", False), ("panic_after_outage", True)):
        with LocalBroker(extra_config="max_queued_messages 0\nuser root",
                         persistence=True) as broker:
            sub = Subscriber(broker.port, "ronda/v1/+/events", client_id=f"cc-{label}",
                             clean=False)
            fleet = [Node(broker.url, tmp / f"{label}-{i}", node=f"bench-p{i:02d}",
                          reconnect=(1.0, 60.0)) for i in range(nodes)]
            if not wake:  # the baseline: the panic waits out the backoff, as before
                for node in fleet:
                    node.bridge.writer.on_alarm = lambda: None
            broker.stop()
            time.sleep(outage_s)
            broker.start()
            time.sleep(1.0)
            cpu0 = cpu_s()
            for node in fleet:
                node.bus.publish(PanicEvent(alarm_id="bench", kind="panic", phase="raised",
                                            source="button:panic"))
            ok = sub.wait_count(nodes, 120)
            lat = sub.latencies_ms()
            note = f"{nodes} nodes, outage {outage_s:.0f} s, panic 1 s after the broker is back"
            emit(f"{label}_p50", pct(lat, 50), "ms", note)
            emit(f"{label}_p99", pct(lat, 99), "ms", "press -> Command Center"
                 + ("" if ok else " SOME MISSING"))
            emit(f"{label}_max", pct(lat, 100), "ms", "with wake-up" if wake else
                 "baseline: wake-up off (waits out the backoff)")
            emit(f"{label}_cpu", cpu_s() - cpu0, "cpu_s", "all nodes + subscriber, this process")
            for node in fleet:
                node.close()
            sub.close()


def bench_fleet(nodes: int, seconds: float, rate: float) -> None:
    for label, node_rate in (("fleet_idle", 1e-9), ("fleet", rate)):
        with LocalBroker() as broker:
            bproc = psutil.Process(broker.proc.pid)
            b0 = sum(bproc.cpu_times()[:2])
            result = FleetSim(ClientOptions(broker=broker.url), nodes=nodes,
                              rate_per_node=node_rate, duration_s=seconds, seed=1).run()
            broker_cpu = sum(bproc.cpu_times()[:2]) - b0
            broker_rss = bproc.memory_info().rss / 2**20
        note = f"{nodes} nodes, {seconds:.0f} s"
        if label == "fleet":
            emit("fleet_events_sent", result.sent, "events", f"{note}, {rate}/s/node")
            emit("fleet_events_lost", result.lost, "events", "must be 0")
            emit("fleet_seq_gaps", result.gaps, "events", "must be 0")
            emit("fleet_duplicates", result.duplicates, "events", "")
            emit("fleet_latency_p50", result.latency_ms(50), "ms", "publish -> checker")
            emit("fleet_latency_p99", result.latency_ms(99), "ms", "")
        emit(f"{label}_wills", result.wills_seen, "nodes",
             f"of {result.crashed} killed without DISCONNECT")
        emit(f"{label}_connected", result.connected, "nodes", note)
        emit(f"{label}_broker_cpu", broker_cpu, "cpu_s", "Mosquitto, whole run incl. connects")
        emit(f"{label}_broker_rss", broker_rss, "MiB", "Mosquitto at the end")
        emit(f"{label}_sim_cpu", result.sim_cpu_s, "cpu_s", "simulator + checker process")
        emit(f"{label}_ok", 1.0 if result.ok else 0.0, "bool", "zero loss, no gap, wills")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000, help="latency events (2000)")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s (200)")
    parser.add_argument("--nodes", type=int, default=1000, help="fleet nodes (1000)")
    parser.add_argument("--fleet-s", type=float, default=15.0, help="fleet seconds (15)")
    parser.add_argument("--fleet-rate", type=float, default=0.2,
                        help="events/s per simulated node (0.2)")
    parser.add_argument("--panic-nodes", type=int, default=20,
                        help="nodes of the panic-after-outage figure (20)")
    parser.add_argument("--outage-s", type=float, default=20.0,
                        help="broker outage before the panic figure (20 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ronda-bench-mqtt-") as tmp:
        with LocalBroker() as broker:
            bench_baseline(broker, args.events, args.rate)
            bench_node(broker, args.events, args.rate, Path(tmp))
        bench_outage(Path(tmp))
        bench_panic_after_outage(Path(tmp), args.panic_nodes, args.outage_s)
    bench_fleet(args.nodes, args.fleet_s, args.fleet_rate)
    emit("peak_rss", PROC.memory_info().rss / 2**20, "MiB", "this process (maxrss below)")
    import resource

    emit("maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB", "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
