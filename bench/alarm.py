"""Alarm latency bench: button edge -> siren pin, and button edge -> event at an MQTT subscriber.

Runs the alarm area as the daemon builds it (real wiring, gpiozero MockFactory pins, a
real state dir with fsync'ed alarm files), and, when the MQTT area is present, the real
MQTT wiring against a real Mosquitto on a loopback port.

Figures (one line each: name, value, unit, note):

- ``baseline_edge_to_pin_*``: bare gpiozero, a button callback that switches an output:
  the floor that any design on gpiozero pays;
- ``edge_to_siren_*``: the alarm's path (debounce, state machine, rhythm start) over
  `--presses` presses (target p99 <= 5 ms);
- ``edge_to_mqtt_event_*``: press -> the panic event at a paho subscriber on loopback
  (target p99 <= 100 ms);
- ``edge_to_siren_broker_down_*``: the first figure again with the broker stopped;
- ``cutoff_late_*``: how long after its `max_on_s` a playing siren is off (the tests
  check that it stops by itself, not how exactly), against ``baseline_timer_late_*``, a
  bare `threading.Event.wait` of the same length: the floor of any timer-driven cut-off;
- CPU seconds of this process per phase and its peak RSS.

Example::

    .venv/bin/python bench/alarm.py --presses 1000 --mqtt-presses 300
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpiozero import DigitalInputDevice, DigitalOutputDevice  # noqa: E402
from gpiozero.pins.mock import MockFactory  # noqa: E402

from firmware import config  # noqa: E402
from firmware.bus import EventBus  # noqa: E402
from firmware.wiring import Context  # noqa: E402
from firmware.wiring import alarm as alarm_wiring  # noqa: E402

PANIC, ACK, SIREN, LIGHT = 17, 27, 23, 24
NODE = "bench-rw05"
PROC = psutil.Process()


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    print(f"{name}\t{value:.3f}\t{unit}\t{note}", flush=True)


def cpu_s() -> float:
    times = PROC.cpu_times()
    return times.user + times.system


def percentiles(name: str, samples_s: list[float], note: str) -> None:
    ms = sorted(s * 1000 for s in samples_s)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    emit(f"{name}_p50", q[49], "ms", note)
    emit(f"{name}_p99", q[98], "ms", note)
    emit(f"{name}_max", ms[-1], "ms", f"n={len(ms)}")


def timed_pin(pin: Any, stamps: list[float]) -> None:
    """Record the perf_counter of every rising change of a mock output pin."""
    change = pin._change_state

    def recording(value: bool) -> bool:
        changed = change(value)
        if changed and value:
            stamps.append(time.perf_counter())
        return changed

    pin._change_state = recording


def baseline(presses: int) -> None:
    factory = MockFactory()
    button = DigitalInputDevice(PANIC, pull_up=True, pin_factory=factory)
    relay = DigitalOutputDevice(SIREN, pin_factory=factory)
    button.when_activated = relay.on
    stamps: list[float] = []
    timed_pin(factory.pin(SIREN), stamps)
    pin = factory.pin(PANIC)
    samples = []
    cpu0 = cpu_s()
    for _ in range(presses):
        t0 = time.perf_counter()
        pin.drive_low()
        samples.append(stamps[-1] - t0)
        pin.drive_high()
        relay.off()
    emit("baseline_cpu", cpu_s() - cpu0, "s", f"{presses} presses, bare gpiozero")
    percentiles("baseline_edge_to_pin", samples, "bare gpiozero: callback -> output.on()")
    button.close()
    relay.close()


class AlarmNode:
    """The alarm area (and the MQTT area when `broker_url` is given) in this process."""

    def __init__(self, state_dir: Path, broker_url: str | None = None) -> None:
        mqtt = {"enabled": False}
        if broker_url:
            mqtt = {"brokers": [broker_url], "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
        cfg = config.parse({
            "node": {"id": NODE, "data_dir": str(state_dir)},
            "gpio": {"pin_factory": "mock", "panic": [{"pin": PANIC, "bounce_ms": 1}],
                     "ack": {"pin": ACK, "bounce_ms": 1}, "siren": {"pin": SIREN},
                     "light": {"pin": LIGHT}},
            "mqtt": mqtt,
        })
        self.bus = EventBus()
        self.ctx = Context(cfg, self.bus, lambda: {"components": {}}, state_dir, {})
        self.components = alarm_wiring.build(self.ctx)
        if broker_url:
            from firmware.wiring import mqtt as mqtt_wiring

            self.components += mqtt_wiring.build(self.ctx)
        self.controller = self.ctx.shared["alarm"]
        self.factory = self.controller.panel.factory
        self.stamps: list[float] = []
        timed_pin(self.factory.pin(SIREN), self.stamps)
        self.bus.start()
        for comp in self.components:
            comp.start()

    def press_once(self) -> tuple[float, str]:
        """Press, return (edge -> siren seconds, alarm id); then release and ack."""
        panic, ack = self.factory.pin(PANIC), self.factory.pin(ACK)
        before = len(self.stamps)
        t0 = time.perf_counter()
        panic.drive_low()
        if len(self.stamps) == before:
            raise RuntimeError("the siren did not switch on")
        latency = self.stamps[-1] - t0
        alarm_id = self.controller.alarm.alarm_id
        time.sleep(0.0012)
        panic.drive_high()
        ack.drive_low()
        time.sleep(0.0012)
        ack.drive_high()
        time.sleep(0.0012)
        return latency, alarm_id

    def stop(self) -> None:
        for comp in self.components:
            comp.stop()
        self.bus.stop()


def siren_phase(node: AlarmNode, presses: int, name: str, note: str) -> None:
    samples = []
    cpu0 = cpu_s()
    for _ in range(presses):
        samples.append(node.press_once()[0])
    node.controller.drain(10)
    emit(f"{name}_cpu", cpu_s() - cpu0, "s", f"{presses} presses incl. events, files, acks")
    percentiles(name, samples, note)


class Subscriber:
    """A Command Center stand-in on loopback, timing panic events by alarm id."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.arrived: dict[str, float] = {}
        self.cond = threading.Condition()
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: (c.subscribe(f"ronda/v1/{NODE}/events", qos=1),
                                                ready.set())
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("subscriber did not connect")
        time.sleep(0.2)

    def _message(self, _c: Any, _u: Any, msg: Any) -> None:
        now = time.perf_counter()
        doc = json.loads(msg.payload)
        if doc.get("type") == "panic":
            with self.cond:
                self.arrived.setdefault(doc["alarm_id"], now)
                self.cond.notify_all()

    def wait(self, alarm_id: str, timeout: float = 10.0) -> float:
        deadline = time.monotonic() + timeout
        with self.cond:
            while alarm_id not in self.arrived:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"event {alarm_id} never arrived")
                self.cond.wait(left)
            return self.arrived[alarm_id]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def mqtt_phases(presses: int, mqtt_presses: int, workdir: Path) -> None:
    from devtools.broker import LocalBroker

    broker = LocalBroker().start()
    node = AlarmNode(workdir / "state-mqtt", broker.url)
    try:
        deadline = time.monotonic() + 10
        while not node.ctx.shared["mqtt"].link.connected:
            if time.monotonic() > deadline:
                raise RuntimeError("the node did not connect")
            time.sleep(0.02)
        cc = Subscriber(broker.port)
        samples = []
        cpu0 = cpu_s()
        for _ in range(mqtt_presses):
            t0 = time.perf_counter()
            _, alarm_id = node.press_once()
            samples.append(cc.wait(alarm_id) - t0)
        emit("edge_to_mqtt_event_cpu", cpu_s() - cpu0, "s",
             f"{mqtt_presses} presses, this process (node + subscriber)")
        percentiles("edge_to_mqtt_event", samples,
                    "press -> panic event at a paho subscriber, Mosquitto on loopback")
        cc.stop()
        broker.stop()
        while node.ctx.shared["mqtt"].link.connected:
            time.sleep(0.02)
        siren_phase(node, presses, "edge_to_siren_broker_down",
                    "broker stopped: events pile up in the outbox")
        emit("outbox_depth_after_outage", node.ctx.shared["mqtt"].outbox.depth(), "events",
             "raised + cleared per press, kept for delivery")
    finally:
        node.stop()
        broker.stop()


def cutoff_phase(runs: int, limit_s: float = 0.3) -> None:
    from drivers.gpio.pattern import PatternOutput

    timer_late, cutoff_late = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        threading.Event().wait(limit_s)
        timer_late.append(time.perf_counter() - t0 - limit_s)
    for _ in range(runs):
        factory = MockFactory()
        done = threading.Event()
        out = PatternOutput("siren", DigitalOutputDevice(SIREN, pin_factory=factory),
                            on_change=lambda *a, d=done: a[1] == "off" and d.set(),
                            max_on_s=limit_s)
        t0 = time.perf_counter()
        out.play("panic", [0.05, 0.05], cause="bench", duration_s=100)
        done.wait(10)
        cutoff_late.append(time.perf_counter() - t0 - limit_s)
        out.close()
    percentiles("baseline_timer_late", timer_late, f"Event.wait({limit_s})")
    percentiles("cutoff_late", cutoff_late, f"PatternOutput max_on_s={limit_s}, asked 100 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presses", type=int, default=1000)
    parser.add_argument("--mqtt-presses", type=int, default=300)
    parser.add_argument("--cutoffs", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="ronda-bench-alarm-") as tmp:
        workdir = Path(tmp)
        baseline(args.presses)
        cutoff_phase(args.cutoffs)
        node = AlarmNode(workdir / "state")
        try:
            siren_phase(node, args.presses, "edge_to_siren",
                        "MockFactory drive_low -> siren pin high, alarm area as wired")
        finally:
            node.stop()
        try:
            import firmware.wiring.mqtt  # noqa: F401  (present once the MQTT area landed)
        except ImportError:
            emit("edge_to_mqtt_event_p99", float("nan"), "ms", "skipped: no MQTT wiring")
        else:
            mqtt_phases(args.presses, args.mqtt_presses, workdir)
    emit("peak_rss", PROC.memory_info().rss / 2**20, "MiB", "whole bench process")
    return 0


if __name__ == "__main__":
    sys.exit(main())
