"""Arming: whether person alerts count now (armed, disarmed, or a daily schedule).

Panic buttons ignore arming: they are always live. Detection asks `armed()` (offered as
``ctx.shared["armed"]``) before it raises a person alert.

Example::

    arm = ArmState("schedule", ["22:00-05:00"], zone=ZoneInfo("Asia/Jakarta"))
    arm.armed()          # True between 22:00 and 05:00 Jakarta time
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from typing import Any

from firmware.alarm.settings import WINDOW

MODES = ("armed", "disarmed", "schedule")


def parse_window(text: str) -> tuple[int, int]:
    """'22:00-05:00' -> (1320, 300): start and end in minutes after midnight."""
    match = WINDOW.match(text)
    if not match:
        raise ValueError(f"{text!r}: expected 'HH:MM-HH:MM', e.g. '22:00-05:00'")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return h1 * 60 + m1, h2 * 60 + m2


def in_window(minute: int, window: tuple[int, int]) -> bool:
    """Whether `minute` of the day is inside [start, end); windows may cross midnight;
    start == end means the whole day."""
    start, end = window
    if start == end:
        return True
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


class ArmState:
    """The arm mode and schedule; thread-safe."""

    def __init__(self, mode: str, schedule: Sequence[str],
                 zone: dt.tzinfo | None = None) -> None:
        self._lock = threading.Lock()
        self.zone = zone
        self.mode = "armed"
        self.schedule: list[str] = []
        self.set(mode, schedule)

    def set(self, mode: str, schedule: Sequence[str] | None = None) -> None:
        """Change mode (and optionally schedule); raises ValueError on a bad value."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
        windows = None
        if schedule is not None:
            if isinstance(schedule, str) or not all(isinstance(w, str) for w in schedule):
                raise ValueError("schedule must be a list of 'HH:MM-HH:MM' strings")
            windows = [parse_window(w) for w in schedule]
        with self._lock:
            self.mode = mode
            if windows is not None:
                self.schedule = list(schedule or [])
                self._windows = windows

    def armed(self, now: float | dt.datetime | None = None) -> bool:
        """Whether alerts are armed at `now` (epoch seconds or datetime; default: now)."""
        with self._lock:
            mode, windows = self.mode, list(self._windows)
        if mode != "schedule":
            return mode == "armed"
        if now is None:
            when = dt.datetime.now(self.zone)
        elif isinstance(now, dt.datetime):
            when = now.astimezone(self.zone) if now.tzinfo else now
        else:
            when = dt.datetime.fromtimestamp(now, self.zone)
        minute = when.hour * 60 + when.minute
        return any(in_window(minute, w) for w in windows)

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "schedule": list(self.schedule), "armed": self.armed()}
