"""Runs the components, restarts the ones that crash, and speaks to systemd.

The supervisor's loop is the daemon's main loop. Each tick it:
- restarts components whose thread died of an exception, waiting with `support.backoff`
  (ceiling 1 s doubling to 60 s, full jitter, at least 0.5 s);
- sends WATCHDOG=1 only if no component is stalled (no beat for its `stall_after_s`),
  so that systemd restarts a node that is alive but stuck;
- refreshes the STATUS= line with a one-line summary.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from firmware.component import Component
from firmware.notify import notify, watchdog_interval
from support.backoff import Backoff

log = logging.getLogger(__name__)

TICK_S = 0.5
RESTART_MIN_S, RESTART_MAX_S = 1.0, 60.0
RESTART_FLOOR_S = 0.5  # never a busy loop, whatever the jitter draws


class Supervisor:
    """Owns a list of components for the daemon's lifetime."""

    def __init__(self, components: list[Component]) -> None:
        self.components = components
        self._stop = threading.Event()
        self._restart_at: dict[str, float] = {}
        self._backoff: dict[str, Backoff] = {
            c.name: Backoff(RESTART_MIN_S, RESTART_MAX_S, min_s=RESTART_FLOOR_S)
            for c in components}
        self._started_at: dict[str, float] = {}
        self.crashes: dict[str, int] = {c.name: 0 for c in components}
        self.last_error = ""
        self.started = time.time()

    def start(self) -> None:
        for comp in self.components:
            log.info("starting %s", comp.name)
            comp.start()

    def stop(self, budget_s: float = 4.0) -> None:
        """Stop every component, last started first, within `budget_s` in total."""
        self._stop.set()
        deadline = time.monotonic() + budget_s
        for comp in reversed(self.components):
            comp.stop(timeout=max(0.2, deadline - time.monotonic()))

    def request_stop(self) -> None:
        self._stop.set()

    def stalled(self) -> list[str]:
        return [c.name for c in self.components
                if c.running and c.stalled_for() > c.stall_after_s]

    def status_line(self) -> str:
        parts = []
        for comp in self.components:
            try:
                part = comp.summary()
            except Exception as exc:  # a broken summary() must not end the main loop
                part = f"{comp.name}: {exc!r}"
            if part:
                parts.append(part)
        stalled = self.stalled()
        if stalled:
            parts.append("stalled: " + ", ".join(stalled))
        return "; ".join(parts) or "running"

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        for comp in self.components:
            try:
                part = dict(comp.health())
            except Exception as exc:  # a broken health() must not break the report
                part = {"error": repr(exc)}
            part.setdefault("running", comp.running)
            part["crashes"] = self.crashes[comp.name]
            report[comp.name] = part
        return report

    def loop(self) -> None:
        """Tick until `request_stop`; returns then (the caller stops the components)."""
        interval = watchdog_interval()
        next_ping = 0.0
        next_status = 0.0
        status = ""
        tick = TICK_S if interval is None else min(TICK_S, interval / 2)
        while not self._stop.wait(tick):
            now = time.monotonic()
            self._restart_crashed(now)
            if interval is not None and now >= next_ping and not self.stalled():
                notify("WATCHDOG=1")
                next_ping = now + interval
            if now >= next_status:
                line = self.status_line()
                if line != status:
                    notify(f"STATUS={line}")
                    status = line
                next_status = now + 5.0

    def _restart_crashed(self, now: float) -> None:
        for comp in self.components:
            name = comp.name
            if comp.running or comp.error is None:
                if comp.running and now - self._started_at.get(name, now) > RESTART_MAX_S:
                    self._backoff[name].reset()  # ran well for a while: forgive the past
                continue
            if name not in self._restart_at:
                self.crashes[name] += 1
                self.last_error = f"{name}: {comp.error!r}"
                delay = self._backoff[name].next_delay()
                self._restart_at[name] = now + delay
                log.error("%s crashed (%r); restarting in %.1f s", name, comp.error, delay)
            elif now >= self._restart_at[name]:
                del self._restart_at[name]
                log.info("restarting %s", name)
                self._started_at[name] = now
                comp.start()
