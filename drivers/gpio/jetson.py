"""A gpiozero pin factory on NVIDIA's Jetson.GPIO, so the same devices run on a Jetson.

gpiozero's own factories refuse non-Pi boards (`PinUnknownPi`). This layer maps gpiozero's
`Pin` interface onto Jetson.GPIO's RPi.GPIO-style API (`setmode`, `setup`, `input`,
`output`, `add_event_detect`, `remove_event_detect`, `cleanup`).

Pin numbering (`numbering`):

- ``BOARD`` (default): physical pins of the 40-pin header, ``pin = 7`` is header pin 7.
  Names accepted: ``7``, ``"BOARD7"``, ``"J12:7"``.
- ``BCM``: the Raspberry Pi's Broadcom names for the same header positions
  (Jetson.GPIO maps them), ``pin = 4`` is header pin 7, so a Pi config works unchanged.
  Names accepted: ``4``, ``"GPIO4"``, ``"BCM4"``, ``"J12:7"``.

Jetson.GPIO ignores pull-up/down requests (the Tegra pinmux sets them), so inputs need an
external resistor (10 kΩ to 3V3 for a button to ground); the layer warns once per pin.
Jetson.GPIO is imported lazily: importing this module needs nothing from NVIDIA.

Example::

    factory = JetsonFactory(numbering="BOARD")
    button = Button(7, pin_factory=factory)
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from types import ModuleType
from typing import Any

from gpiozero.exc import PinInvalidFunction, PinInvalidPin, PinSetInput
from gpiozero.pins import BoardInfo, Factory, HeaderInfo, Pin, PinInfo

log = logging.getLogger(__name__)

HEADER = "J12"  # the 40-pin header's name on the Orin Nano dev kit (J41 on the Nano)

# Physical pin -> Broadcom GPIO number, for the Pi-compatible 40-pin header.
BOARD_TO_BCM: dict[int, int] = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24,
    19: 10, 21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12,
    33: 13, 35: 19, 36: 16, 37: 26, 38: 20, 40: 21,
}


def _pin_info(physical: int, numbering: str) -> PinInfo:
    bcm = BOARD_TO_BCM[physical]
    if numbering == "BCM":
        name = f"GPIO{bcm}"
        names = {bcm, str(bcm), name, f"BCM{bcm}", f"{HEADER}:{physical}"}
    else:
        name = f"BOARD{physical}"
        names = {physical, str(physical), name, f"{HEADER}:{physical}"}
    row, col = (physical + 1) // 2, 2 - physical % 2
    return PinInfo(number=physical, name=name, names=frozenset(names), pull="",
                   row=row, col=col, interfaces=frozenset({"gpio"}))


def board_info(numbering: str = "BOARD") -> BoardInfo:
    """gpiozero's description of a Jetson 40-pin header in the given numbering."""
    if numbering not in ("BOARD", "BCM"):
        raise ValueError(f"numbering must be BOARD or BCM, not {numbering!r}")
    pins = {n: _pin_info(n, numbering) for n in BOARD_TO_BCM}
    header = HeaderInfo(name=HEADER, rows=20, columns=2, pins=pins)
    return BoardInfo(
        revision="jetson", model="Jetson", pcb_revision="", released="", soc="Tegra",
        manufacturer="NVIDIA", memory=None, storage="", usb=0, usb3=0, ethernet=1,
        eth_speed=1000, wifi=False, bluetooth=False, csi=0, dsi=0,
        headers={HEADER: header}, board="")


class JetsonPin(Pin):
    """One header pin driven through Jetson.GPIO."""

    def __init__(self, factory: JetsonFactory, info: PinInfo) -> None:
        super().__init__()
        self._factory = factory
        self._info = info
        self._gpio = factory.gpio
        self.channel = int(info.name.removeprefix("GPIO").removeprefix("BOARD"))
        self._function = "input"
        self._pull = "floating"
        self._edges = "both"
        self._bounce: float | None = None
        self._callback: Any = None
        self._detecting = False
        self._lock = threading.RLock()
        self._gpio.setup(self.channel, self._gpio.IN)

    def __repr__(self) -> str:
        return self._info.name

    @property
    def factory(self) -> JetsonFactory:
        return self._factory

    def close(self) -> None:
        with self._lock:
            self._stop_detect()
            self._callback = None
            try:
                self._gpio.cleanup(self.channel)
            except Exception:  # already cleaned up: nothing to release
                log.debug("%s: cleanup failed", self, exc_info=True)

    def output_with_state(self, state: bool) -> None:
        with self._lock:
            self._stop_detect()
            level = self._gpio.HIGH if state else self._gpio.LOW
            self._gpio.setup(self.channel, self._gpio.OUT, initial=level)
            self._function = "output"

    def input_with_pull(self, pull: str) -> None:
        self.function = "input"
        self.pull = pull

    # -- gpiozero's Pin properties -----------------------------------------------------
    def _get_info(self) -> PinInfo:
        return self._info

    def _get_function(self) -> str:
        return self._function

    def _set_function(self, value: str) -> None:
        if value not in ("input", "output"):
            raise PinInvalidFunction(f"{self}: function must be input or output")
        if value == self._function:
            return
        if value == "output":
            self.output_with_state(False)
        else:
            with self._lock:
                self._gpio.setup(self.channel, self._gpio.IN)
                self._function = "input"
                if self._callback is not None:
                    self._start_detect()

    def _get_state(self) -> bool:
        return bool(self._gpio.input(self.channel))

    def _set_state(self, value: float) -> None:
        if self._function != "output":
            raise PinSetInput(f"cannot set the state of input pin {self}")
        self._gpio.output(self.channel, self._gpio.HIGH if value else self._gpio.LOW)

    def _get_pull(self) -> str:
        return self._pull

    def _set_pull(self, value: str) -> None:
        if value not in ("up", "down", "floating"):
            raise ValueError(f"{self}: pull must be up, down or floating")
        if value != "floating" and value != self._pull:
            log.warning("%s: Jetson.GPIO cannot set pull-%s; fit an external resistor "
                        "(10 kOhm to %s)", self, value, "3V3" if value == "up" else "GND")
        self._pull = value

    def _get_bounce(self) -> float | None:
        return self._bounce

    def _set_bounce(self, value: float | None) -> None:
        with self._lock:
            self._bounce = None if value is None else float(value)
            self._restart_detect()

    def _get_edges(self) -> str:
        return self._edges

    def _set_edges(self, value: str) -> None:
        if value not in ("both", "rising", "falling", "none"):
            raise ValueError(f"{self}: edges must be both, rising, falling or none")
        with self._lock:
            self._edges = value
            self._restart_detect()

    def _get_when_changed(self) -> Any:
        return self._callback

    def _set_when_changed(self, value: Any) -> None:
        with self._lock:
            self._callback = value
            if value is None:
                self._stop_detect()
            elif not self._detecting:
                self._start_detect()

    # -- edge detection ----------------------------------------------------------------
    def _start_detect(self) -> None:
        if self._function != "input" or self._edges == "none" or self._detecting:
            return
        edge = {"both": self._gpio.BOTH, "rising": self._gpio.RISING,
                "falling": self._gpio.FALLING}[self._edges]
        kwargs = {}
        if self._bounce:
            kwargs["bouncetime"] = max(1, round(self._bounce * 1000))
        self._gpio.add_event_detect(self.channel, edge, callback=self._edge, **kwargs)
        self._detecting = True

    def _stop_detect(self) -> None:
        if self._detecting:
            self._gpio.remove_event_detect(self.channel)
            self._detecting = False

    def _restart_detect(self) -> None:
        if self._detecting:
            self._stop_detect()
            self._start_detect()

    def _edge(self, channel: int) -> None:
        """Jetson.GPIO's event thread calls this with the channel; gpiozero wants (ticks, state)."""
        callback = self._callback
        if callback is not None:
            callback(self._factory.ticks(), self._get_state())


class JetsonFactory(Factory):
    """gpiozero pin factory on Jetson.GPIO. `gpio` injects the module (tests use a double)."""

    def __init__(self, numbering: str = "BOARD", gpio: ModuleType | Any | None = None) -> None:
        super().__init__()
        self.numbering = numbering
        self._info = board_info(numbering)
        self.gpio = gpio if gpio is not None else importlib.import_module("Jetson.GPIO")
        self.gpio.setwarnings(False)
        self.gpio.setmode(self.gpio.BOARD if numbering == "BOARD" else self.gpio.BCM)
        self.pins: dict[PinInfo, JetsonPin] = {}
        self._pins_lock = threading.Lock()

    def _get_board_info(self) -> BoardInfo:
        return self._info

    def pin(self, name: int | str) -> JetsonPin:
        for _header, info in self._info.find_pin(name):
            with self._pins_lock:
                pin = self.pins.get(info)
                if pin is None:
                    pin = self.pins[info] = JetsonPin(self, info)
                return pin
        raise PinInvalidPin(f"{name} is not a GPIO pin of the Jetson header "
                            f"({self.numbering} numbering)")

    def close(self) -> None:
        with self._pins_lock:
            pins = list(self.pins.values())
            self.pins.clear()
        for pin in pins:
            pin.close()

    @staticmethod
    def ticks() -> float:
        return time.monotonic()

    @staticmethod
    def ticks_diff(later: float, earlier: float) -> float:
        return later - earlier
