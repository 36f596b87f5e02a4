"""A fleet simulator: N simulated nodes on one broker, and a checker that counts
(`ronda fleet-sim`, bench/mqtt.py, the console's scale tests; not installed on a node).

Each simulated node is a real MQTT client speaking the node contract: last will
`offline` (QoS 1, retained), `online` on connect, a retained health report (the
`health` schema) and random person events (the `events` schema) with its own `seq`.
All nodes run in one thread over a selector (paho's external-loop API), so a thousand
of them cost one Python thread, not a thousand.

A separate checker client subscribes to `<prefix>/+/events` and `+/status` and reports
whether every event arrived exactly once with no gap in `seq`, the publish-to-receive
latency, and whether the nodes that "crash" (socket closed without DISCONNECT) were
announced `offline` by their last will.

Example::

    result = FleetSim(ClientOptions(broker="mqtt://127.0.0.1:1883"), nodes=100,
                      duration_s=10).run()
    print(result.lost, result.latency_ms(99))
"""

from __future__ import annotations

import heapq
import json
import random
import resource
import selectors
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho

from central.mqtt_client import ClientOptions, connect, make_client
from mqtt.link import PAHO_LOG, encode
from mqtt.payloads import event_payload, health_payload
from mqtt.topics import Topics


@dataclass
class FleetResult:
    """What the checker saw."""

    nodes: int
    connected: int = 0
    sent: int = 0
    acked: int = 0
    received: int = 0
    duplicates: int = 0
    lost: int = 0
    gaps: int = 0
    out_of_order: int = 0
    crashed: int = 0
    wills_seen: int = 0
    online_seen: int = 0
    duration_s: float = 0.0
    sim_cpu_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def latency_ms(self, percentile: float) -> float | None:
        """Publish-to-receive latency at `percentile` (0-100), None without events."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, round(percentile / 100 * (len(ordered) - 1)))
        return ordered[index]

    @property
    def ok(self) -> bool:
        """Zero loss, no gap, every crash announced by its last will."""
        return (self.lost == 0 and self.gaps == 0 and self.connected == self.nodes
                and self.wills_seen >= self.crashed)


class _Checker:
    """The Command Center side: subscribes and checks ids, seq and latency."""

    def __init__(self, opts: ClientOptions, prefix: str) -> None:
        self.prefix = prefix
        self.lock = threading.Condition()
        self.ids: set[str] = set()
        self.seqs: dict[str, list[int]] = {}
        self.duplicates = 0
        self.latencies: list[float] = []
        self.status: dict[str, list[str]] = {}
        self.opts = ClientOptions(**{**opts.__dict__,
                                     "client_id": f"fleet-check-{uuid.uuid4().hex[:6]}"})
        self.client: paho.Client | None = None

    def start(self) -> None:
        self.client = connect(self.opts)
        self.client.on_message = self._on_message
        done = threading.Event()
        self.client.on_subscribe = lambda *_: done.set()
        self.client.subscribe([(f"{self.prefix}/+/events", 1), (f"{self.prefix}/+/status", 1)])
        done.wait(10)

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time()
        node, _, kind = msg.topic[len(self.prefix) + 1:].partition("/")
        with self.lock:
            if kind == "status":
                if not msg.retain:
                    self.status.setdefault(node, []).append(msg.payload.decode())
            else:
                doc = json.loads(msg.payload)
                if doc["id"] in self.ids:
                    self.duplicates += 1
                else:
                    self.ids.add(doc["id"])
                    self.seqs.setdefault(node, []).append(doc["seq"])
                    self.latencies.append((now - doc["ts"]) * 1000)
            self.lock.notify_all()

    def wait(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(min(left, 0.2))
            return True


class _SimNode:
    def __init__(self, node_id: str, topics: Topics, client: paho.Client) -> None:
        self.node_id = node_id
        self.topics = topics
        self.client = client
        self.seq = 0
        self.connected = False
        self.started = time.time()
        self.pending: set[int] = set()
        self.acked = 0


class FleetSim:
    """Runs `nodes` simulated nodes for `duration_s` and checks what arrived."""

    def __init__(self, opts: ClientOptions, *, nodes: int = 100, prefix: str = "ronda/v1",
                 rate_per_node: float = 0.2, duration_s: float = 10.0,
                 crash_fraction: float = 0.1, health_interval_s: float = 30.0,
                 seed: int | None = None) -> None:
        self.opts = opts
        self.count = nodes
        self.prefix = prefix
        self.rate = rate_per_node
        self.duration_s = duration_s
        self.crash_fraction = crash_fraction
        self.health_interval_s = health_interval_s
        self.random = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:6]
        self.nodes: list[_SimNode] = []
        self.selector = selectors.DefaultSelector()

    # -- the nodes ------------------------------------------------------------------------
    def _make_node(self, index: int) -> _SimNode:
        node_id = f"sim-{self.run_id}-{index:05d}"
        client, broker = make_client(ClientOptions(**{**self.opts.__dict__,
                                                      "client_id": f"ronda-{node_id}"}))
        client.enable_logger(PAHO_LOG)
        topics = Topics(self.prefix, node_id)
        client.will_set(topics.status, b"offline", qos=1, retain=True)
        sim = _SimNode(node_id, topics, client)

        def on_connect(c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            if getattr(reason, "is_failure", False):
                return
            sim.connected = True
            c.publish(topics.status, b"online", qos=1, retain=True)
            self._health(sim)

        def on_publish(_c: Any, _u: Any, mid: int, _r: Any, _p: Any) -> None:
            if mid in sim.pending:
                sim.pending.discard(mid)
                sim.acked += 1

        client.on_connect = on_connect
        client.on_publish = on_publish
        client.connect(broker.host, broker.port, keepalive=60)
        sock = client.socket()
        assert sock is not None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.selector.register(sock, selectors.EVENT_READ, sim)
        return sim

    def _health(self, sim: _SimNode) -> None:
        report = {"node": sim.node_id, "version": "sim", "ts": time.time(),
                  "uptime_s": time.time() - sim.started, "last_error": None,
                  "components": {"system": {"cpu_percent": self.random.uniform(5, 60),
                                            "temperature_c": self.random.uniform(40, 70),
                                            "throttled": [], "clock_synced": True,
                                            "memory": {"total": 4 << 30, "available": 3 << 30}}}}
        doc = health_payload(report, mqtt={"connected": True},
                             outbox={"depth": 0, "bytes": 0, "drops": 0})
        sim.client.publish(sim.topics.health, encode(doc), qos=1, retain=True)

    def _event(self, sim: _SimNode) -> None:
        sim.seq += 1
        event_id = uuid.uuid4().hex
        if self.random.random() < 0.05:  # now and then somebody presses the panic button
            fields = {"id": event_id, "ts": time.time(), "type": "panic", "camera": None,
                      "alarm_id": event_id, "kind": "panic", "phase": "raised",
                      "source": "button:panic", "presses": 1}
        else:
            fields = {"id": event_id, "ts": time.time(), "type": "object",
                      "camera": f"cam{self.random.randint(1, 4)}", "track_id": str(sim.seq),
                      "phase": self.random.choice(["start", "end"]), "label": "person",
                      "score": round(self.random.uniform(0.5, 1), 2)}
        doc = {**event_payload(fields, sim.node_id, sim.topics, False), "seq": sim.seq}
        info = sim.client.publish(sim.topics.events, encode(doc), qos=1)
        sim.pending.add(info.mid)

    def _service(self, timeout: float) -> None:
        for sim in self.nodes:
            if sim.client.want_write():
                sim.client.loop_write()
        for key, _ in self.selector.select(timeout):
            sim = key.data
            sim.client.loop_read(100)

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> FleetResult:
        """Connect, run, crash some, stop the others, and count."""
        result = FleetResult(nodes=self.count)
        checker = _Checker(self.opts, self.prefix)
        checker.start()
        cpu0 = _cpu_s()
        started = time.monotonic()
        try:
            for i in range(self.count):
                self.nodes.append(self._make_node(i))
                if i % 50 == 49:
                    self._service(0)
            deadline = time.monotonic() + 30
            while (sum(n.connected for n in self.nodes) < self.count
                   and time.monotonic() < deadline):
                self._service(0.05)
            result.connected = sum(n.connected for n in self.nodes)
            self._run_events()
            result.sent = sum(n.seq for n in self.nodes)
            deadline = time.monotonic() + 30
            while any(n.pending for n in self.nodes) and time.monotonic() < deadline:
                self._service(0.05)
            result.acked = sum(n.acked for n in self.nodes)
            checker.wait(lambda: len(checker.ids) >= result.sent, 30)
            crashed = self._stop_nodes()
            result.crashed = len(crashed)
            checker.wait(lambda: all(checker.status.get(n, [])[-1:] == ["offline"]
                                     for n in crashed), 30)
            result.duration_s = time.monotonic() - started
            result.sim_cpu_s = _cpu_s() - cpu0
        finally:
            checker.stop()
            self.selector.close()
        self._count(result, checker, crashed)
        return result

    def _run_events(self) -> None:
        now = time.monotonic()
        end = now + self.duration_s
        queue: list[tuple[float, int, str]] = []
        for i in range(self.count):
            heapq.heappush(queue, (now + self.random.expovariate(self.rate), i, "event"))
            heapq.heappush(queue, (now + self.random.uniform(0, self.health_interval_s), i,
                                   "health"))
        next_misc = now + 1.0
        while True:
            now = time.monotonic()
            if now >= end:
                return
            while queue and queue[0][0] <= now:
                _, i, kind = heapq.heappop(queue)
                sim = self.nodes[i]
                if kind == "event":
                    self._event(sim)
                    heapq.heappush(queue, (now + self.random.expovariate(self.rate), i, kind))
                else:
                    self._health(sim)
                    heapq.heappush(queue, (now + self.health_interval_s, i, kind))
            if now >= next_misc:
                for sim in self.nodes:
                    sim.client.loop_misc()
                next_misc = now + 1.0
            wait = min(queue[0][0] if queue else end, end, next_misc) - time.monotonic()
            self._service(max(0.0, wait))

    def _stop_nodes(self) -> list[str]:
        crash_count = round(self.count * self.crash_fraction)
        crashed = []
        for n, sim in enumerate(self.nodes):
            sock = sim.client.socket()
            if sock is not None:
                self.selector.unregister(sock)
            if n < crash_count:  # as if the power was cut: no DISCONNECT, the will speaks
                crashed.append(sim.node_id)
                if sock is not None:
                    sock.close()
            else:
                sim.client.publish(sim.topics.status, b"offline", qos=1, retain=True)
                sim.client.loop_write()
                sim.client.disconnect()
                sim.client.loop_write()
        return crashed

    def _count(self, result: FleetResult, checker: _Checker, crashed: list[str]) -> None:
        with checker.lock:
            result.received = len(checker.ids)
            result.duplicates = checker.duplicates
            result.latencies_ms = list(checker.latencies)
            result.lost = max(0, result.sent - result.received)
            for seqs in checker.seqs.values():
                expected = 1
                for seq in seqs:
                    if seq < expected:
                        result.out_of_order += 1
                    elif seq > expected:
                        result.gaps += seq - expected
                    expected = max(expected, seq + 1)
            for sim in self.nodes:  # events never seen at the tail are gaps too
                seen = checker.seqs.get(sim.node_id, [])
                result.gaps += sim.seq - max(seen, default=0)
            result.wills_seen = sum(1 for n in crashed
                                    if checker.status.get(n, [])[-1:] == ["offline"])
            result.online_seen = sum(1 for s in checker.status.values() if "online" in s)


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


