"""Platform health: CPU, memory, temperature, power flags, clock; power events."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from drivers import platform
from firmware import __version__
from firmware.bus import EventBus
from firmware.component import Component
from firmware.events import PowerEvent, UpdateEvent
from firmware.wiring import Context
from support.files import atomic_write


class SystemMonitor(Component):
    """Samples the board every `interval_s` and raises power events on flag changes."""

    name = "system"

    def __init__(self, bus: EventBus, interval_s: float = 5.0,
                 state_dir: Path | None = None) -> None:
        super().__init__()
        self.bus = bus
        self.state_dir = state_dir
        self.interval_s = interval_s
        self.stall_after_s = max(30.0, 4 * interval_s)
        self.process = psutil.Process(os.getpid())
        self.started = time.time()
        self.sample: dict[str, Any] = {}
        self._flags: list[str] | None = None
        self._announced: object = None

    def run(self) -> None:
        platform.cpu_percent()
        while True:
            self._sample()
            self.beat()
            if self.stopping.wait(self.interval_s):
                return

    def _announce_update(self) -> None:
        """Publish what the last `ronda update` did (it leaves it in the state dir)."""
        from firmware.provision.update import mark_announced, unannounced_outcome

        outcome = unannounced_outcome(self.state_dir) if self.state_dir else None
        if outcome and outcome.get("id") != self._announced:
            self._announced = outcome.get("id")  # once, even if the mark cannot be saved
            self.bus.publish(UpdateEvent(state=str(outcome.get("state")),
                                         reason=str(outcome.get("reason") or ""),
                                         detail={"from": outcome.get("from"),
                                                 "to": outcome.get("to")}))
            with contextlib.suppress(OSError):
                mark_announced(self.state_dir, outcome)

    def _sample(self) -> None:
        self._announce_update()
        flags = platform.throttled()
        now_flags = [f for f in flags or [] if not f.endswith("_since_boot")]
        if flags is not None and now_flags != self._flags:
            if self._flags is not None or now_flags:
                self.bus.publish(PowerEvent(state="degraded" if now_flags else "ok",
                                            flags=now_flags))
            self._flags = now_flags
        with self.process.oneshot():
            cpu_s = sum(self.process.cpu_times()[:2])
            rss = self.process.memory_info().rss
        self.sample = {
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            "cpu_percent": platform.cpu_percent(),
            "process_cpu_s": round(cpu_s, 2),
            "process_rss": rss,
            "memory": platform.memory(),
            "temperature_c": platform.temperature_c(),
            "throttled": flags,
            "clock_synced": platform.clock_synced(),
        }

    def health(self) -> dict[str, Any]:
        return dict(self.sample)


class HealthFile(Component):
    """Writes the node's health as JSON to `path` every `interval_s`, atomically.

    Under systemd the file is `$RUNTIME_DIRECTORY/health.json` (/run/ronda, in RAM, so no
    flash wear): `ronda update` reads it to tell that the new release is up and healthy,
    and a technician can `cat` it without a broker.
    """

    name = "health-file"

    def __init__(self, health: Callable[[], dict[str, Any]], path: Path,
                 interval_s: float = 10.0) -> None:
        super().__init__()
        self.health_source = health
        self.path = path
        self.interval_s = interval_s
        self.stall_after_s = max(30.0, 4 * interval_s)

    def run(self) -> None:
        while True:
            # /run is a tmpfs: atomic for readers, no fsync needed
            atomic_write(self.path, json.dumps(self.health_source(), default=str),
                         durable=False)
            self.beat()
            if self.stopping.wait(self.interval_s):
                return


def build(ctx: Context) -> list[Component]:
    components: list[Component] = [SystemMonitor(ctx.bus, state_dir=ctx.state_dir)]
    runtime_dir = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime_dir:
        components.append(HealthFile(ctx.health, Path(runtime_dir) / "health.json"))
    return components
