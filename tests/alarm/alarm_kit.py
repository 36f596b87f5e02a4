"""Helpers shared by the alarm tests (a module of its own: every test directory has a
`conftest`, so importing helpers from `conftest` picks whichever was loaded last)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware import config
from firmware.bus import EventBus
from firmware.events import Message
from firmware.wiring import Context
from firmware.wiring import alarm as alarm_wiring
from tests.waiting import wait_for  # the one wait helper, re-exported for the alarm tests

PINS = {"panic": 17, "fire": 22, "ack": 27, "siren": 23, "light": 24, "status_led": 25,
        "buzzer": 26}


def node_config(state_dir: Path, gpio: dict | None = None, alarm: dict | None = None,
                cameras: list | None = None, mqtt: dict | None = None) -> config.Config:
    """A config with every alarm device on mock pins (overridable)."""
    gpio_section = {
        "pin_factory": "mock",
        "panic": [{"pin": PINS["panic"], "name": "pos"},
                  {"pin": PINS["fire"], "name": "dapur", "kind": "fire"}],
        "ack": {"pin": PINS["ack"]},
        "siren": {"pin": PINS["siren"]},
        "light": {"pin": PINS["light"]},
        "status_led": {"pin": PINS["status_led"]},
        "buzzer": {"pin": PINS["buzzer"]},
        **(gpio or {}),
    }
    return config.parse({
        "node": {"id": "test-rw05", "data_dir": str(state_dir)},
        "gpio": gpio_section,
        "alarm": alarm or {},
        "cameras": cameras or [],
        "mqtt": mqtt or {"enabled": False},
    })


@dataclass(frozen=True, kw_only=True)
class _Settled(Message):
    """The marker of `Node.settle`."""


class Node:
    """The alarm area of one node, built by the real wiring, with a recording bus."""

    def __init__(self, state_dir: Path, shared: dict | None = None, **sections: Any) -> None:
        self.config = node_config(state_dir, **sections)
        self.bus = EventBus()
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.ctx = Context(self.config, self.bus, lambda: {"components": {}}, state_dir,
                           dict(shared or {}))
        self.components = alarm_wiring.build(self.ctx)
        if self.config.mqtt.enabled:  # the real MQTT area, built after the alarm as in AREAS
            from firmware.wiring import mqtt as mqtt_wiring

            self.components += mqtt_wiring.build(self.ctx)
        self.bus.subscribe(Message, self._record, name="recorder-of-test")
        self.controller = self.ctx.shared["alarm"]
        self.panel = self.controller.panel
        self.factory = self.panel.factory if self.panel else None
        self.started = False

    def _record(self, msg: Message) -> None:
        with self._lock:
            self.messages.append(msg)

    def settle(self, timeout: float = 10.0) -> None:
        """Return once every message published before this call has been recorded (the
        bus delivers to one subscriber in order: a marker sent now arrives after them)."""
        marker = _Settled()
        self.bus.publish(marker)

        def arrived() -> bool:
            with self._lock:
                return any(m is marker for m in self.messages)

        wait_for(arrived, timeout, "the bus to deliver what was published")

    def start(self) -> Node:
        self.bus.start()
        for comp in self.components:
            comp.start()
        self.started = True
        return self

    def stop(self) -> None:
        for comp in self.components:
            comp.stop()
        self.bus.stop()

    def pin(self, name: str):
        return self.factory.pin(PINS[name])

    def press(self, name: str = "panic") -> None:
        self.pin(name).drive_low()

    def release(self, name: str = "panic") -> None:
        self.pin(name).drive_high()

    def tap(self, name: str = "panic", gap_s: float = 0.04) -> None:
        """Press and release, spaced beyond the default 30 ms bounce window."""
        self.press(name)
        time.sleep(gap_s)  # on purpose: a press, as a finger makes it, beyond the bounce window
        self.release(name)
        time.sleep(gap_s)

    def of(self, kind: type, **match: Any) -> list:
        with self._lock:
            found = [m for m in self.messages if isinstance(m, kind)]
        return [m for m in found if all(getattr(m, k) == v for k, v in match.items())]

    def wait(self, kind: type, timeout: float = 5.0, **match: Any):
        return wait_for(lambda: self.of(kind, **match), timeout,
                        f"{kind.__name__} {match}")[0]
