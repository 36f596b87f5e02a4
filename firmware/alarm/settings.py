"""`[alarm]` config: panic policy, time limits, siren rhythms, arming schedule.

A rhythm ("pattern") is a list of durations in seconds, alternately on and off, starting
with on, repeated: ``[0.4, 0.3, 0.4, 1.5]`` is two beats then a pause, like two strokes of
a kentongan. An empty list is a steady tone.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")

# Kentongan codes differ between villages; these are common ones (one stroke group per
# kind), meant to be adapted locally. "titir" (fast, unbroken beating) means grave danger.
DEFAULT_PATTERNS: dict[str, list[float]] = {
    "steady": [],
    "panic": [0.4, 0.3, 0.4, 1.5],                      # 2 strokes: theft / crime
    "fire": [0.4, 0.3, 0.4, 0.3, 0.4, 1.5],             # 3 strokes: fire
    "disaster": [0.4, 0.3, 0.4, 0.3, 0.4, 0.3, 0.4, 1.5],  # 4 strokes: flood, landslide
    "titir": [0.15, 0.15],                              # continuous: grave danger
}
DEFAULT_KIND_PATTERNS: dict[str, str] = {
    "panic": "panic", "fire": "fire", "disaster": "disaster", "remote": "titir",
}


class AlarmSettings(BaseModel):
    """How the panic button, the siren and the lights behave."""

    model_config = ConfigDict(extra="forbid")

    panic_policy: Literal["instant", "hold"] = Field(
        default="instant",
        description="instant: a press raises the alarm; hold: it must be held hold_s seconds "
                    "(the status LED and buzzer show the hold is counting).")
    hold_s: float = Field(default=1.5, gt=0, le=10)
    siren_max_s: float = Field(default=180.0, gt=0, le=1800,
                               description="The siren stops after this, acknowledged or not.")
    light_max_s: float = Field(default=900.0, gt=0, le=7200,
                               description="The alarm light stops after this; the alarm then "
                                           "clears by itself.")
    pre_s: float = Field(default=30.0, ge=0, le=600, description="Footage kept before an alarm.")
    post_s: float = Field(default=120.0, ge=0, le=1800,
                          description="Footage kept after an alarm ends.")
    light_mode: Literal["steady", "strobe"] = "strobe"
    strobe: list[float] = Field(default_factory=lambda: [0.1, 0.1],
                                description="On/off rhythm of the light in strobe mode.")
    patterns: dict[str, list[float]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_PATTERNS.items()},
        description="Named siren rhythms: durations (s) alternately on and off.")
    kind_patterns: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_KIND_PATTERNS),
        description="Which rhythm each alarm kind sounds; unknown kinds use 'panic'.")
    arm_mode: Literal["armed", "disarmed", "schedule"] = Field(
        default="armed",
        description="Person alerts: always, never, or inside `schedule`. A remote `arm` "
                    "command overrides this until the next one. Panic buttons are always live.")
    schedule: list[str] = Field(
        default_factory=lambda: ["22:00-05:00"],
        description="Armed windows in local time, 'HH:MM-HH:MM'; may cross midnight.")
    timezone: str | None = Field(default=None,
                                 description="IANA zone, e.g. 'Asia/Jakarta'; default: system.")
    snapshot_timeout_s: float = Field(default=3.0, gt=0, le=30)

    @field_validator("patterns", "strobe")
    @classmethod
    def _rhythms(cls, value: dict[str, list[float]] | list[float]):
        items = value.items() if isinstance(value, dict) else [("strobe", value)]
        for name, steps in items:
            if len(steps) % 2:
                raise ValueError(f"{name}: needs pairs of on/off durations (got {len(steps)})")
            if any(s <= 0 or s > 60 for s in steps):
                raise ValueError(f"{name}: durations must be in (0, 60] seconds")
        return value

    @field_validator("schedule")
    @classmethod
    def _windows(cls, value: list[str]) -> list[str]:
        for window in value:
            if not WINDOW.match(window):
                raise ValueError(f"{window!r}: expected 'HH:MM-HH:MM', e.g. '22:00-05:00'")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r} (e.g. 'Asia/Jakarta')") from None
        return value

    @model_validator(mode="after")
    def _kinds_known(self) -> AlarmSettings:
        for kind, name in self.kind_patterns.items():
            if name not in self.patterns:
                raise ValueError(f"kind_patterns.{kind}: no pattern named {name!r}")
        if "panic" not in self.patterns:
            raise ValueError("patterns must keep a 'panic' pattern (the fallback)")
        return self

    def pattern_for(self, kind: str) -> tuple[str, list[float]]:
        """The rhythm name and steps that an alarm of `kind` sounds."""
        name = self.kind_patterns.get(kind, "panic")
        return name, self.patterns[name]
