"""The status LED during first boot, with the daemon's rhythms (docs/technician.md):
`booting` while the boot file is applied (formatting an SSD takes minutes), the
`config_rejected` rhythm when it is refused; off once applied, for the daemon to take over.

The pin is the boot file's `[gpio] status_led` when that section is valid, else the
image's safe default (GPIO23), as the daemon's safe mode does.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from drivers.gpio.pattern import PatternOutput
from drivers.gpio.settings import GpioSettings
from firmware.alarm.status import RHYTHMS

log = logging.getLogger(__name__)

SHOWS = {"applying": "booting", "error": "config_rejected"}


def status_led_settings(boot_file: Path) -> GpioSettings:
    """`[gpio]` of the boot file if valid on its own, else the image's safe defaults."""
    from firmware import config
    from firmware.fallback import DEFAULTS

    for source in (boot_file, DEFAULTS):
        with contextlib.suppress(OSError, ValueError, config.tomllib.TOMLDecodeError):
            data = config.tomllib.loads(Path(source).read_text(errors="replace"))
            return GpioSettings.model_validate(data.get("gpio", {}))
    return GpioSettings()


class FirstbootLed:
    """A status hook for `firstboot(status=...)` that drives the status LED."""

    def __init__(self, gpio: GpioSettings, factory: Any = None) -> None:
        from gpiozero import DigitalOutputDevice

        from drivers.gpio.factory import make_pin_factory

        self.output: PatternOutput | None = None
        self.factory = factory
        self._own = factory is None
        if gpio.status_led is None or not gpio.enabled:
            return
        if self.factory is None:
            self.factory = make_pin_factory(gpio.pin_factory, gpio.jetson_numbering)
        device = DigitalOutputDevice(gpio.status_led.pin, active_high=gpio.status_led.active_high,
                                     initial_value=False, pin_factory=self.factory)
        self.output = PatternOutput("status_led", device)

    def __call__(self, state: str) -> None:
        if self.output is None:
            return
        mode = SHOWS.get(state)
        if mode:
            self.output.play(mode, RHYTHMS[mode], cause=f"firstboot:{state}")
        else:
            self.output.off(cause=f"firstboot:{state}")

    def close(self) -> None:
        """Release the pin (the daemon claims it next)."""
        if self.output is not None:
            self.output.close()
        if self._own and self.factory is not None:
            with contextlib.suppress(Exception):
                self.factory.close()
