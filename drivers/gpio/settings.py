"""`[gpio]` config: which pin each device is on. Pins use Broadcom (BCM) numbering on a Pi."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class OutputPin(BaseModel):
    """A relay- or transistor-driven output."""

    model_config = ConfigDict(extra="forbid")

    pin: int | str = Field(description="BCM number on a Pi (e.g. 17) or a board pin name.")
    active_high: bool = True


class InputPin(BaseModel):
    """A push button or key wired to ground (pull_up=true) or to 3V3 (pull_up=false)."""

    model_config = ConfigDict(extra="forbid")

    pin: int | str
    pull_up: bool = True
    bounce_ms: int = Field(default=30, ge=0, le=1000)


class GpioSettings(BaseModel):
    """GPIO devices. Any device left out is simply absent."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    pin_factory: Literal["auto", "lgpio", "rpigpio", "pigpio", "native", "jetson", "mock"] = "auto"
    panic: list[InputPin] = Field(default_factory=list, description="Panic buttons.")
    ack: InputPin | None = Field(default=None, description="Local key that silences an alarm.")
    siren: OutputPin | None = None
    light: OutputPin | None = None
    status_led: OutputPin | None = None
    buzzer: OutputPin | None = None
