"""Platform health: CPU, memory, temperature, power flags, clock; power events."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

from drivers import platform
from firmware import __version__
from firmware.bus import EventBus
from firmware.component import Component
from firmware.events import PowerEvent
from firmware.wiring import Context


class SystemMonitor(Component):
    """Samples the board every `interval_s` and raises power events on flag changes."""

    name = "system"

    def __init__(self, bus: EventBus, interval_s: float = 5.0) -> None:
        super().__init__()
        self.bus = bus
        self.interval_s = interval_s
        self.stall_after_s = max(30.0, 4 * interval_s)
        self.process = psutil.Process(os.getpid())
        self.started = time.time()
        self.sample: dict[str, Any] = {}
        self._flags: list[str] | None = None

    def run(self) -> None:
        platform.cpu_percent()
        while True:
            self._sample()
            self.beat()
            if self.stopping.wait(self.interval_s):
                return

    def _sample(self) -> None:
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


def build(ctx: Context) -> list[Component]:
    return [SystemMonitor(ctx.bus)]
