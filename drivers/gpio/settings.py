"""`[gpio]` config: which pin each device is on.

Pin numbers follow the pin factory's numbering: Broadcom (BCM) numbers on a Raspberry Pi
(``pin = 17`` is GPIO17, physical pin 11); on a Jetson, `jetson_numbering` says whether
numbers are physical header pins (BOARD, the default) or the Pi's BCM names (BCM, so that a
Pi config file works unchanged on a Jetson's Pi-compatible 40-pin header).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PinFactoryName = Literal["auto", "lgpio", "rpigpio", "pigpio", "native", "jetson", "mock"]


class OutputPin(BaseModel):
    """A relay- or transistor-driven output (siren, light, LED, buzzer)."""

    model_config = ConfigDict(extra="forbid")

    pin: int | str = Field(description="BCM number on a Pi (e.g. 17) or a board pin name.")
    active_high: bool = Field(
        default=True,
        description="true: pin high = device on. false for relay boards that switch on a low "
                    "input (then a crashed node leaves the relay ON unless the board has a "
                    "pull-up on its input: prefer active-high boards with pull-downs).")


class InputPin(BaseModel):
    """A push button or key: wired to ground (pull_up=true) or to 3V3 (pull_up=false).

    `pull_up = "external"` means the board must not pull the pin (an external resistor does);
    then `active_high` says which level means pressed.
    """

    model_config = ConfigDict(extra="forbid")

    pin: int | str
    pull_up: bool | Literal["external"] = True
    active_high: bool | None = Field(
        default=None, description="Only with pull_up = \"external\": true if pressed = high.")
    bounce_ms: int = Field(default=30, ge=0, le=1000,
                           description="Edges closer than this to the last accepted edge are "
                                       "contact bounce and ignored.")

    @model_validator(mode="after")
    def _external_needs_level(self) -> InputPin:
        if self.pull_up == "external" and self.active_high is None:
            raise ValueError('pull_up = "external" needs active_high = true or false')
        if self.pull_up != "external" and self.active_high is not None:
            raise ValueError('active_high is only for pull_up = "external" (with the internal '
                             "pull the pressed level follows from pull_up)")
        return self


class PanicInput(InputPin):
    """A panic (or fire...) button: `kind` names the alarm it raises and its siren rhythm."""

    kind: str = Field(default="panic", pattern=r"^[a-z][a-z0-9_-]*$",
                      description="Alarm kind: panic, fire, ... (see [alarm] kind_patterns).")
    name: str = Field(default="", description="Where it is, e.g. 'pos' or 'gerbang'.")


class GpioSettings(BaseModel):
    """GPIO devices. Any device left out is simply absent."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    pin_factory: PinFactoryName = Field(
        default="auto",
        description="auto: Jetson.GPIO on a Jetson, else gpiozero's choice (GPIOZERO_PIN_FACTORY "
                    "or lgpio, rpigpio, pigpio, native); mock: simulated pins (tests, demo).")
    jetson_numbering: Literal["BOARD", "BCM"] = Field(
        default="BOARD", description="Jetson only: pins as physical header numbers or BCM names.")
    panic: list[PanicInput] = Field(default_factory=list, description="Panic buttons.")
    ack: InputPin | None = Field(default=None, description="Local key that silences an alarm.")
    siren: OutputPin | None = None
    light: OutputPin | None = None
    status_led: OutputPin | None = None
    buzzer: OutputPin | None = Field(default=None,
                                     description="Small buzzer: feedback while a button is held.")

    @model_validator(mode="after")
    def _pins_unique(self) -> GpioSettings:
        seen: dict[str, str] = {}
        named = [(f"panic[{i}]", p.pin) for i, p in enumerate(self.panic)]
        for name in ("ack", "siren", "light", "status_led", "buzzer"):
            dev = getattr(self, name)
            if dev is not None:
                named.append((name, dev.pin))
        for name, pin in named:
            key = str(pin)
            if key in seen:
                raise ValueError(f"{name} and {seen[key]} both use pin {pin}")
            seen[key] = name
        return self
