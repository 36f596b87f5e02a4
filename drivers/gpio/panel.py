"""The watch post's panel: panic buttons, ack key, siren, light, status LED, buzzer.

`Panel` creates each configured device on its pin (outputs off from the first instant)
and hands button edges to callbacks *in the GPIO library's callback thread*, so whoever
reacts can drive an output without any hand-off. Bounce is filtered here, in software
and on the leading edge: the first edge counts at once, edges within `bounce_ms` after
it are ignored. (Driver-level debouncing, as lgpio does it, waits for the level to be
stable first and so delays every press by the bounce time.)

Example::

    panel = Panel(settings, make_pin_factory("mock"), on_press=print)
    panel.siren.play("panic", [0.4, 0.3], cause="test")
    panel.close()   # everything off, pins released
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.pins import Factory

from drivers.gpio.pattern import ChangeCallback, PatternOutput
from drivers.gpio.settings import GpioSettings, InputPin, OutputPin, PanicInput

log = logging.getLogger(__name__)

# on_press(button) / on_release(button)
EdgeCallback = Callable[["ButtonInput"], None]


class ButtonInput:
    """A button or key on one pin with leading-edge software debounce."""

    def __init__(self, name: str, spec: InputPin, factory: Factory, *,
                 on_press: EdgeCallback | None = None,
                 on_release: EdgeCallback | None = None) -> None:
        self.name = name
        self.spec = spec
        self.kind = spec.kind if isinstance(spec, PanicInput) else name
        self.bounce_s = spec.bounce_ms / 1000.0
        self.on_press = on_press
        self.on_release = on_release
        self.presses = 0
        self.bounces = 0
        self._last_edge = -1e9
        self._lock = threading.Lock()
        self._down = False  # the debounced state: the last accepted edge was a press
        self._recheck: threading.Timer | None = None
        self._closed = False
        pull_up = None if spec.pull_up == "external" else spec.pull_up
        self.device = DigitalInputDevice(spec.pin, pull_up=pull_up,
                                         active_state=spec.active_high, pin_factory=factory)
        self.device.when_activated = self._pressed
        self.device.when_deactivated = self._released

    @property
    def is_pressed(self) -> bool:
        """The pin's level now (not debounced); False once the pin is closed."""
        try:
            return bool(self.device.is_active)
        except Exception:  # DeviceClosed: a timer looking after close()
            return False

    def _accept(self, down: bool) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._last_edge < self.bounce_s:
                self.bounces += 1
                self._recheck_later(self._last_edge + self.bounce_s - now)
                return False
            if down == self._down:  # a second edge the same way (a missed one between)
                return False
            self._last_edge = now
            self._down = down
            return True

    def _recheck_later(self, delay: float) -> None:
        """After an ignored edge, look at the level again once the bounce window is over.

        Without this a short glitch (an accepted release, then the re-press inside the
        window) would leave the button "up" while it is held down. Called under _lock.
        """
        if self._recheck is not None or self._closed:
            return
        timer = threading.Timer(max(0.0, delay) + 0.001, self._recheck_level)
        timer.daemon = True
        self._recheck = timer
        timer.start()

    def _recheck_level(self) -> None:
        with self._lock:
            self._recheck = None
            if self._closed:
                return
        level = self.is_pressed
        if level != self._down:
            log.debug("%s: level %s after the bounce window", self.name,
                      "down" if level else "up")
            (self._pressed if level else self._released)()

    def _pressed(self) -> None:
        if not self._accept(True):
            return
        self.presses += 1
        if self.on_press is not None:
            self.on_press(self)

    def _released(self) -> None:
        if not self._accept(False):
            return
        if self.on_release is not None:
            self.on_release(self)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timer, self._recheck = self._recheck, None
        if timer is not None:
            timer.cancel()
        self.device.close()


def _output(name: str, spec: OutputPin, factory: Factory, max_on_s: float | None,
            on_change: ChangeCallback | None) -> PatternOutput:
    device = DigitalOutputDevice(spec.pin, active_high=spec.active_high, initial_value=False,
                                 pin_factory=factory)
    return PatternOutput(name, device, max_on_s=max_on_s, on_change=on_change)


class Panel:
    """Every configured GPIO device; absent devices are None (outputs) or left out (buttons)."""

    def __init__(self, settings: GpioSettings, factory: Factory, *,
                 on_press: EdgeCallback | None = None,
                 on_release: EdgeCallback | None = None,
                 on_ack: EdgeCallback | None = None,
                 on_change: ChangeCallback | None = None,
                 siren_max_s: float | None = None,
                 light_max_s: float | None = None,
                 on_outputs: Callable[[Panel], None] | None = None) -> None:
        self.factory = factory
        self.siren: PatternOutput | None = None
        self.light: PatternOutput | None = None
        self.status_led: PatternOutput | None = None
        self.buzzer: PatternOutput | None = None
        self.buttons: list[ButtonInput] = []
        self.ack: ButtonInput | None = None
        try:
            # Outputs first: they must be driven off before anything can press a button.
            limits = {"siren": siren_max_s, "light": light_max_s}
            for name in ("siren", "light", "status_led", "buzzer"):
                spec = getattr(settings, name)
                if spec is not None:
                    setattr(self, name, _output(name, spec, factory, limits.get(name),
                                                on_change))
            if on_outputs is not None:  # e.g. attach the controller before any press
                on_outputs(self)
            for i, spec in enumerate(settings.panic):
                name = f"panic:{spec.name or i}"
                self.buttons.append(ButtonInput(name, spec, factory, on_press=on_press,
                                                on_release=on_release))
            if settings.ack is not None:
                self.ack = ButtonInput("ack", settings.ack, factory, on_press=on_ack)
        except Exception:
            self.close()
            raise

    def outputs(self) -> dict[str, PatternOutput]:
        """The present outputs by name."""
        return {n: o for n in ("siren", "light", "status_led", "buzzer")
                if (o := getattr(self, n)) is not None}

    def all_off(self, cause: str) -> None:
        """Every output off now."""
        for out in self.outputs().values():
            try:
                out.off(cause=cause)
            except Exception:
                log.exception("cannot switch %s off", out.name)

    def close(self, timeout: float = 2.0) -> None:
        """Outputs off and every pin released, waiting at most about `timeout` in all."""
        deadline = time.monotonic() + timeout
        for button in [*self.buttons, *([self.ack] if self.ack else [])]:
            try:
                button.close()
            except Exception:
                log.debug("closing %s failed", button.name, exc_info=True)
        for out in self.outputs().values():
            out.close(timeout=deadline - time.monotonic())
        self.buttons, self.ack = [], None
        self.siren = self.light = self.status_led = self.buzzer = None
