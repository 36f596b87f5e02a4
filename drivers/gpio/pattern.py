"""An on/off output that plays a rhythm and never stays on longer than it may.

`play()` switches the pin on *in the caller's thread* (so a GPIO callback drives the siren
within microseconds), then a worker thread of the output walks the rhythm and switches it
off at the deadline. The deadline is enforced here, in the driver, by the output's own
thread: no bus, network or disk is involved, so `max_on_s` holds whatever the rest of the
daemon is doing.

Example::

    siren = PatternOutput("siren", DigitalOutputDevice(23), max_on_s=180)
    siren.play("panic", [0.4, 0.3, 0.4, 1.5], cause="button:panic")
    ...
    siren.off(cause="key:ack")
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

# on_change(name, state, cause, until_wall_clock_or_None)
MAX_WAIT_S = 60.0  # longest single sleep of the worker (Condition.wait cannot take inf)

ChangeCallback = Callable[[str, str, str, "float | None"], None]


class Switch(Protocol):
    """What PatternOutput drives: a gpiozero DigitalOutputDevice or anything alike."""

    def on(self) -> None: ...
    def off(self) -> None: ...
    def close(self) -> None: ...


def level_at(steps: Sequence[float], elapsed: float) -> tuple[bool, float]:
    """Whether a rhythm is on `elapsed` s after it started, and for how much longer.

    `steps` alternate on and off durations, starting with on; empty means steady on.
    """
    period = sum(steps)
    if not steps or period <= 0:
        return True, math.inf
    t = elapsed % period
    for i, step in enumerate(steps):
        if t < step:
            return i % 2 == 0, step - t
        t -= step
    return False, 1e-3  # float rounding at the very end of a period


class PatternOutput:
    """One output: off, steady on, or a repeated rhythm, with a hard time limit."""

    def __init__(self, name: str, device: Switch, *, max_on_s: float | None = None,
                 on_change: ChangeCallback | None = None) -> None:
        self.name = name
        self.device = device
        self.max_on_s = max_on_s
        self.on_change = on_change
        self._cond = threading.Condition()
        self._steps: tuple[float, ...] = ()
        self._label = "off"
        self._started = 0.0  # when the current rhythm started (its phase)
        self._on_since = 0.0  # when the output last went from off to on (for max_on_s)
        self._until = math.inf
        self._active = False
        self._level = False
        self._closed = False
        self.changes = 0
        # Reports leave the lock, so two threads can report in the wrong order: each change
        # gets a number under the lock, and a report older than one already made is dropped.
        self._seq = 0
        self._reported = 0
        self._report_lock = threading.Lock()
        self._pending: tuple[int, str, str, float | None] | None = None
        self.device.off()
        self._thread = threading.Thread(target=self._run, name=f"out:{name}", daemon=True)
        self._thread.start()

    # -- control ---------------------------------------------------------------------
    def play(self, label: str, steps: Sequence[float] = (), *, cause: str,
             duration_s: float | None = None, report: bool = True) -> float | None:
        """Start rhythm `steps` now (pin on before this returns); returns the wall-clock end.

        The output stops after `duration_s`, and never later than `max_on_s` after it
        went on: playing again while it is on changes the rhythm, not that limit, so no
        series of requests keeps it on longer than `max_on_s` at a stretch.
        With `report=False` the change is reported (logged, `on_change`) only by a later
        `flush()`, so a caller can drive several pins before any of that.
        """
        now = time.monotonic()
        with self._cond:
            if self._closed:
                return None
            if not self._active:
                self._on_since = now
            deadline = now + (math.inf if duration_s is None else duration_s)
            if self.max_on_s is not None:
                deadline = min(deadline, self._on_since + self.max_on_s)
            self._steps = tuple(steps)
            self._label = label
            self._started = now
            self._until = deadline
            self._active = True
            self._drive(True)
            self._cond.notify()
            self._seq += 1
            seq = self._seq
            until = None if math.isinf(deadline) else time.time() + (deadline - now)
            if not report:
                self._pending = (seq, label, cause, until)
                return until
        self._report(seq, label, cause, until)
        return until

    def flush(self) -> None:
        """Make the report that `play(..., report=False)` held back."""
        with self._cond:
            pending, self._pending = self._pending, None
        if pending is not None:
            self._report(*pending)

    def on(self, *, cause: str, duration_s: float | None = None,
           report: bool = True) -> float | None:
        """Steady on (for `duration_s`, at most `max_on_s`)."""
        return self.play("on", (), cause=cause, duration_s=duration_s, report=report)

    def off(self, *, cause: str) -> bool:
        """Off now; returns whether it was on."""
        with self._cond:
            was = self._active
            self._active = False
            self._label = "off"
            self._drive(False)
            self._cond.notify()
            self._seq += 1
            seq = self._seq
        if was:
            self._report(seq, "off", cause, None)
        return was

    def close(self, timeout: float = 2.0) -> None:
        """Off, stop the worker (waiting at most `timeout`), release the pin.

        The worker no longer insists once closed, so a failed final off() is retried
        here once, and reported loudly if the pin may still be on.
        """
        with self._cond:
            self._closed = True
            self._active = False
            self._drive(False)
            if self._level:
                try:
                    self._set(False)
                except Exception:
                    log.critical("%s: cannot switch the output off at close: it may stay "
                                 "on (ExecStopPost 'ronda outputs-off' is the last resort)",
                                 self.name, exc_info=True)
            self._cond.notify()
        self._thread.join(max(0.0, timeout))
        try:
            self.device.close()
        except Exception:  # closing twice or a pin already gone
            log.debug("%s: close failed", self.name, exc_info=True)

    # -- state -----------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether the output is playing (on or in the off part of its rhythm)."""
        return self._active

    @property
    def label(self) -> str:
        """'off', 'on' or the name of the rhythm being played."""
        return self._label

    def on_for(self) -> float:
        """Seconds since the output was started, 0 when off."""
        return time.monotonic() - self._on_since if self._active else 0.0

    def remaining_s(self) -> float | None:
        """Seconds left before the deadline (None when off or unlimited)."""
        if not self._active or math.isinf(self._until):
            return None
        return max(0.0, self._until - time.monotonic())

    def health(self) -> dict[str, Any]:
        return {"state": self._label, "level": self._level, "remaining_s":
                None if self.remaining_s() is None else round(self.remaining_s() or 0, 1)}

    # -- internals -------------------------------------------------------------------
    def _set(self, level: bool) -> None:
        if level != self._level:
            if level:
                self.device.on()
            else:
                self.device.off()
            self._level = level  # only once the pin really changed: a failure is retried
            self.changes += 1

    def _drive(self, level: bool) -> None:
        """Set the level from a caller's thread; on failure the worker keeps trying."""
        try:
            self._set(level)
        except Exception:
            log.exception("%s: cannot switch %s; retrying", self.name, "on" if level else "off")

    def _report(self, seq: int, state: str, cause: str, until: float | None) -> None:
        with self._report_lock:  # on_change must be quick and must not block
            if seq <= self._reported:  # a later change was reported already
                log.debug("output %s -> %s (%s): stale, not reported", self.name, state, cause)
                return
            self._reported = seq
            if self.on_change is not None:
                try:
                    self.on_change(self.name, state, cause, until)
                except Exception:
                    log.exception("%s: change callback failed", self.name)
        log.info("output %s -> %s (%s)", self.name, state, cause)

    def _run(self) -> None:
        while not self._closed:
            try:
                self._step()
            except Exception:  # this thread enforces the deadline: it must not die
                log.exception("%s: output worker error", self.name)
                time.sleep(0.01)

    def _step(self) -> None:
        expired = False
        with self._cond:
            if self._closed:
                return
            if not self._active:
                if self._level:  # an earlier off() failed half-way: insist
                    self._set(False)
                self._cond.wait(MAX_WAIT_S)
                return
            now = time.monotonic()
            if now >= self._until:
                self._active = False
                self._label = "off"
                expired = True
                self._set(False)
                self._seq += 1
                seq = self._seq
            else:
                level, left = level_at(self._steps, now - self._started)
                self._set(level)
                self._cond.wait(min(left, self._until - now, MAX_WAIT_S))
        if expired:
            self._report(seq, "off", "timeout", None)
