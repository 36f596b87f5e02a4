"""The alarm state machine: idle -> alarm -> (silenced) -> idle.

The fast path runs in the GPIO library's callback thread: a press takes a lock held only
for microseconds, drives the siren and light pins, and queues the rest. Everything slow or
fallible (bus messages, the state file, camera snapshots) happens afterwards in the
worker thread of `reports.AlarmReporter`, so a dead broker, a missing camera or a slow SD
card never delays the siren.

Phases reported as `AlarmEvent`s (the `raised` phase of a panic is a `PanicEvent`, whose
`id` is the alarm id; later phases carry the same `alarm_id`):

- ``raised``: a button (or hold) started an alarm;
- ``silenced``: the siren stopped (siren_max_s, or a remote `siren off`) while the alarm
  stays active (light on);
- ``cleared``: acknowledged (local key or `ack` command) or timed out;
- ``recovered``: reported after a restart for an alarm that was active when the daemon
  died; the outputs stay off.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.gpio.panel import ButtonInput, Panel
from drivers.gpio.pattern import PatternOutput
from firmware.alarm.reports import ActiveAlarm, AlarmReporter, Publish, SnapshotFn
from firmware.alarm.settings import AlarmSettings
from firmware.alarm.status import StatusIndicator
from firmware.alarm.store import JsonFile
from firmware.events import OutputChanged, new_id

log = logging.getLogger(__name__)

__all__ = ["ActiveAlarm", "AlarmController"]


class AlarmController:
    """Panic presses, acknowledgement, the outputs during an alarm, and its reports."""

    def __init__(self, settings: AlarmSettings, publish: Publish, store: JsonFile, *,
                 cameras: Callable[[], list[str]] = list,
                 snapshot: Callable[[], SnapshotFn | None] = lambda: None) -> None:
        self.settings = settings
        self.publish = publish
        self.panel: Panel | None = None
        self.status: StatusIndicator | None = None
        self.alarm: ActiveAlarm | None = None
        self.holding: set[str] = set()
        self.counts = {"alarms": 0, "presses": 0, "acks": 0, "short_holds": 0}
        self._lock = threading.RLock()
        self._hold_timers: dict[str, threading.Timer] = {}
        self.reports = AlarmReporter(settings, publish, store, cameras=cameras,
                                     snapshot=snapshot)
        self._recovered = self.reports.load_interrupted()

    def attach(self, panel: Panel | None, status: StatusIndicator | None = None) -> None:
        """Use `panel`'s outputs (build the panel with this controller's callbacks)."""
        self.panel = panel
        self.status = status

    # -- the fast path (GPIO callback threads) -----------------------------------------
    def on_press(self, button: ButtonInput) -> None:
        """A panic button went down."""
        source = f"button:{button.name}"
        if self.settings.panic_policy == "instant" or self.alarm is not None:
            self.trigger(button.kind, source)
            return
        with self._lock:  # hold policy: feedback now, alarm if still held after hold_s
            self.holding.add(button.name)
            self._feedback(True)
            if button.name in self._hold_timers:  # back down after a glitch: same hold
                return
            timer = threading.Timer(self.settings.hold_s, self._hold_elapsed, (button,))
            timer.daemon = True
            self._hold_timers[button.name] = timer
        timer.start()

    def on_release(self, button: ButtonInput) -> None:
        """A panic button came up: feedback stops, but the hold timer runs on.

        The timer decides by the pin's level when it fires, so a millisecond glitch during
        a hold (a relay spike, a worn contact) does not lose the press; a real short press
        is found released then and counted in `short_holds`.
        """
        with self._lock:
            if button.name not in self._hold_timers:
                return
            self.holding.discard(button.name)
            self._feedback(bool(self.holding))

    def on_ack_key(self, button: ButtonInput) -> None:
        """The local acknowledge key went down."""
        self.ack(f"key:{button.name}")

    def trigger(self, kind: str, source: str) -> str:
        """Raise an alarm of `kind` (or count a press on the active one); returns its id."""
        now = time.time()
        sounded: list = []
        with self._lock:
            alarm = self.alarm
            if alarm is None:
                alarm = ActiveAlarm(new_id(), kind, source, now)
                self.alarm = alarm
                sounded = self._sound(alarm.kind, source)
                self.counts["alarms"] += 1
                copy = dataclasses.replace(alarm)
                self.reports.submit(functools.partial(self.reports.raised, copy))
            else:
                alarm.presses += 1
                self.counts["presses"] += 1
                siren = self.panel.siren if self.panel else None
                if siren is not None and not siren.active:  # pressed again after the cut-off
                    alarm.silenced = False
                    sounded = self._sound(alarm.kind, source, light=False)
                copy = dataclasses.replace(alarm)
                self.reports.submit(functools.partial(self._save_if_current, copy))
        for out in sounded:  # logs and OutputChanged once every pin is driven, unlocked
            out.flush()
        return alarm.alarm_id

    def ack(self, source: str, only: str | None = None) -> ActiveAlarm | None:
        """Silence and clear: every alarm output off; returns the alarm that was active.

        With `only` (an alarm id), nothing happens unless that alarm is the active one,
        decided under the lock: a late ack never clears a newer alarm.
        """
        with self._lock:
            if only is not None and (self.alarm is None or self.alarm.alarm_id != only):
                return None
            alarm, self.alarm = self.alarm, None
            for timer in self._hold_timers.values():
                timer.cancel()
            self._hold_timers.clear()
            self.holding.clear()
            if self.panel is not None:
                for out in (self.panel.siren, self.panel.light, self.panel.buzzer):
                    if out is not None:
                        out.off(cause=source)
            if alarm is not None:
                self.counts["acks"] += 1
                self.reports.submit(functools.partial(self._ended, alarm, source))
        return alarm

    def _sound(self, kind: str, cause: str, light: bool = True) -> list[PatternOutput]:
        """Drive siren and light now; returns them for `flush()` (their reports)."""
        panel = self.panel
        if panel is None:
            return []
        driven = []
        if panel.siren is not None:
            name, steps = self.settings.pattern_for(kind)
            panel.siren.play(name, steps, cause=cause, report=False)
            driven.append(panel.siren)
        if light and panel.light is not None:
            if self.settings.light_mode == "strobe":
                panel.light.play("strobe", self.settings.strobe, cause=cause, report=False)
            else:
                panel.light.on(cause=cause, report=False)
            driven.append(panel.light)
        return driven

    def _feedback(self, on: bool) -> None:
        buzzer = self.panel.buzzer if self.panel else None
        if buzzer is not None:
            if on:
                buzzer.on(cause="hold", duration_s=self.settings.hold_s + 1)
            else:
                buzzer.off(cause="hold")
        if self.status is not None:
            if on:
                self.status.show("holding")
            else:
                self.status.mode = ""  # the status loop shows the right mode again

    def _hold_elapsed(self, button: ButtonInput) -> None:
        with self._lock:
            if self._hold_timers.pop(button.name, None) is None:
                return
            self.holding.discard(button.name)
            still = button.is_pressed
            self._feedback(bool(self.holding))
            if not still:
                self.counts["short_holds"] += 1
        if still:
            self.trigger(button.kind, f"button:{button.name}")
        else:
            log.info("%s released before %.1f s: no alarm", button.name, self.settings.hold_s)

    # -- output changes (any thread) ---------------------------------------------------
    def output_changed(self, name: str, state: str, cause: str, until: float | None) -> None:
        """Panel callback: publish the change; a siren stopping mid-alarm is `silenced`.

        Called by the outputs in order of their changes, under their report lock: it must
        not block nor take the controller's lock (a press holds that while it drives the
        outputs), so the `silenced` check runs on the reporter's worker.
        """
        self.publish(OutputChanged(name=name, state=state, cause=cause, until=until))
        if name == "siren" and state == "off":
            self.reports.submit(functools.partial(self._siren_stopped, cause))

    def _siren_stopped(self, cause: str) -> None:
        with self._lock:
            alarm = self.alarm
            siren = self.panel.siren if self.panel else None
            if alarm is None or alarm.silenced or (siren is not None and siren.active):
                return  # cleared, already silenced, or sounding again
            alarm.silenced = True
            snap = dataclasses.replace(alarm)
        self.reports.phase(snap, "silenced", cause)

    def tick(self) -> None:
        """Periodic checks (from the component): clear a finished alarm; guard the siren."""
        panel = self.panel
        siren = panel.siren if panel else None
        if siren is not None and siren.on_for() > self.settings.siren_max_s + 1.0:
            log.error("siren on past siren_max_s: forcing it off")
            siren.off(cause="guard")
        with self._lock:
            alarm = self.alarm
            if alarm is None:
                return
            outputs = [o for o in (siren, panel.light if panel else None) if o is not None]
            elapsed = time.monotonic() - alarm.started_mono
            if any(o.active for o in outputs) or elapsed < self.settings.siren_max_s:
                return
            # still under the (reentrant) lock: a press now waits and raises a new alarm
            self.ack("timeout", only=alarm.alarm_id)

    # -- on the reporter's worker -------------------------------------------------------
    def _save_if_current(self, alarm: ActiveAlarm) -> None:
        log.info("alarm %s: press %d (%s)", alarm.alarm_id, alarm.presses, alarm.source)
        current = self.alarm
        if current is not None and current.alarm_id == alarm.alarm_id:
            self.reports.save(alarm)

    def _ended(self, alarm: ActiveAlarm, source: str) -> None:
        self.reports.phase(alarm, "cleared", source)
        self.reports.protect(alarm, time.time() + self.settings.post_s)
        if self.alarm is None:
            self.reports.forget()

    def _forget_if_idle(self) -> None:
        if self.alarm is None:
            self.reports.forget()

    # -- restart -----------------------------------------------------------------------
    def report_interrupted(self) -> ActiveAlarm | None:
        """Report (once) the alarm that was active when the daemon last died.

        Called by the component once the bus has all its subscribers; the record was read
        at build time, before a new press could overwrite it.
        """
        alarm, self._recovered = self._recovered, None
        if alarm is not None:
            self.reports.submit(functools.partial(self.reports.recovered, alarm))
            self.reports.submit(self._forget_if_idle)
        return alarm

    # -- life cycle --------------------------------------------------------------------
    def drain(self, timeout: float = 2.0) -> bool:
        """Wait until the reports queued so far are done (tests, orderly stop)."""
        return self.reports.drain(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the reporter's worker (after its queue) and any pending hold timer."""
        with self._lock:
            for timer in self._hold_timers.values():
                timer.cancel()
            self._hold_timers.clear()
        self.reports.close(timeout)

    def health(self) -> dict[str, Any]:
        alarm = self.alarm
        return {
            "state": "alarm" if alarm else "idle",
            "alarm": None if alarm is None else {**alarm.to_json(),
                                                 "age_s": round(time.time() - alarm.started)},
            "holding": sorted(self.holding),
            **self.counts,
        }
