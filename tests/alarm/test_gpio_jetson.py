"""The Jetson pin layer, against a double of Jetson.GPIO's API (constants, checks, event
thread as NVIDIA's library has them), and the pin factory choice."""

from __future__ import annotations

import logging
import threading

import pytest
from alarm_kit import wait_for
from gpiozero import DigitalInputDevice, DigitalOutputDevice
from gpiozero.exc import PinInvalidPin

from drivers.gpio import factory as factory_mod
from drivers.gpio.jetson import BOARD_TO_BCM, JetsonFactory
from drivers.gpio.panel import Panel
from drivers.gpio.settings import GpioSettings
from tests.waiting import all_of

# GPIO-capable header pins of an Orin Nano / Nano dev kit (BOARD numbering).
JETSON_GPIO_PINS = {7, 11, 12, 13, 15, 16, 18, 19, 21, 22, 23, 24, 26, 29, 31, 32, 33, 35,
                    36, 37, 38, 40}


class FakeJetsonGPIO:
    """Jetson.GPIO's module API: same constants, same argument checks, callbacks on a
    separate thread with the channel as argument. `drive()` plays the outside world."""

    BOARD, BCM, TEGRA_SOC, CVM = "BOARD", "BCM", "TEGRA_SOC", "CVM"
    PUD_OFF, PUD_DOWN, PUD_UP = 20, 21, 22
    HIGH, LOW = 1, 0
    RISING, FALLING, BOTH = 11, 12, 13
    OUT, IN = "out", "in"

    def __init__(self) -> None:
        self.mode = None
        self.direction: dict[int, str] = {}
        self.level: dict[int, int] = {}
        self.events: dict[int, tuple[int, object, int | None]] = {}
        self.cleaned: list[int] = []
        self.calls: list[tuple] = []

    def _physical(self, channel: int) -> int:
        if self.mode == self.BOARD:
            physical = channel
        elif self.mode == self.BCM:
            physical = next((p for p, b in BOARD_TO_BCM.items() if b == channel), -1)
        else:
            raise RuntimeError("Please set pin numbering mode using GPIO.setmode")
        if physical not in JETSON_GPIO_PINS:
            raise ValueError(f"Channel {channel} is invalid")
        return physical

    def setwarnings(self, state: bool) -> None:
        self.calls.append(("setwarnings", state))

    def setmode(self, mode: str) -> None:
        if self.mode is not None and mode != self.mode:
            raise ValueError("A different mode has already been set!")
        if mode not in (self.BOARD, self.BCM, self.TEGRA_SOC, self.CVM):
            raise ValueError("An invalid mode was passed to setmode()!")
        self.mode = mode

    def setup(self, channel: int, direction: str, pull_up_down: int = 20,
              initial: int | None = None) -> None:
        if not isinstance(channel, int):
            raise ValueError("Channel must be an integer")
        if direction not in (self.OUT, self.IN):
            raise ValueError("An invalid direction was passed to setup()")
        if direction == self.IN and initial is not None:
            raise ValueError("initial parameter is not valid for inputs")
        p = self._physical(channel)
        self.calls.append(("setup", channel, direction, pull_up_down, initial))
        self.direction[p] = direction
        if direction == self.OUT:
            self.level[p] = self.LOW if initial is None else int(initial)
        else:
            self.level.setdefault(p, self.HIGH)

    def input(self, channel: int) -> int:
        p = self._physical(channel)
        if p not in self.direction:
            raise RuntimeError("You must setup() the GPIO channel first")
        return self.level[p]

    def output(self, channel: int, value: int) -> None:
        p = self._physical(channel)
        if self.direction.get(p) != self.OUT:
            raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
        if int(value) not in (self.HIGH, self.LOW):
            raise ValueError("Invalid output value")
        self.level[p] = int(value)

    def add_event_detect(self, channel: int, edge: int, callback=None,
                         bouncetime: int | None = None) -> None:
        p = self._physical(channel)
        if self.direction.get(p) != self.IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if edge not in (self.RISING, self.FALLING, self.BOTH):
            raise ValueError("The edge must be set to RISING, FALLING, or BOTH")
        if bouncetime is not None and (type(bouncetime) is not int or bouncetime < 0):
            raise TypeError("bouncetime must be an integer")
        if p in self.events:
            raise RuntimeError("Conflicting edge already enabled for this GPIO channel")
        self.events[p] = (channel, callback, bouncetime)
        self.calls.append(("add_event_detect", channel, edge, bouncetime))

    def remove_event_detect(self, channel: int) -> None:
        self.events.pop(self._physical(channel), None)

    def cleanup(self, channel: int | None = None) -> None:
        p = self._physical(channel)
        self.events.pop(p, None)
        self.direction.pop(p, None)
        self.cleaned.append(channel)

    # -- the outside world -------------------------------------------------------------
    def drive(self, physical: int, level: int) -> threading.Thread | None:
        """Set an input's level; fire its callback on another thread, as the library does."""
        assert self.direction.get(physical) == self.IN
        changed = self.level[physical] != level
        self.level[physical] = level
        event = self.events.get(physical)
        if not changed or event is None:
            return None
        channel, callback, _ = event
        thread = threading.Thread(target=callback, args=(channel,))
        thread.start()
        return thread


@pytest.fixture
def gpio() -> FakeJetsonGPIO:
    return FakeJetsonGPIO()


def test_board_numbering_button_and_output(gpio):
    factory = JetsonFactory("BOARD", gpio=gpio)
    button = DigitalInputDevice(7, pull_up=True, bounce_time=0.03, pin_factory=factory)
    relay = DigitalOutputDevice(12, initial_value=False, pin_factory=factory)
    assert gpio.mode == "BOARD"
    assert ("setup", 12, "out", 20, 0) in gpio.calls
    pressed = threading.Event()
    button.when_activated = pressed.set
    assert ("add_event_detect", 7, gpio.BOTH, 30) in gpio.calls
    assert not button.is_active  # pulled up, high = not pressed
    gpio.drive(7, 0).join()
    assert pressed.is_set() and button.is_active
    relay.on()
    assert gpio.level[12] == 1
    relay.off()
    assert gpio.level[12] == 0
    button.close()
    relay.close()
    assert set(gpio.cleaned) == {7, 12} and gpio.events == {}


def test_bcm_numbering_maps_pi_names_to_the_same_header_positions(gpio):
    factory = JetsonFactory("BCM", gpio=gpio)
    led = DigitalOutputDevice(4, pin_factory=factory)  # BCM 4 = header pin 7
    other = DigitalOutputDevice("GPIO17", pin_factory=factory)  # header pin 11
    header = DigitalOutputDevice("J12:13", pin_factory=factory)  # BCM 27
    led.on()
    other.on()
    header.on()
    assert gpio.level[7] == 1 and gpio.level[11] == 1 and gpio.level[13] == 1
    assert ("setup", 4, "out", 20, 0) in gpio.calls  # Jetson.GPIO is given BCM numbers
    for dev in (led, other, header):
        dev.close()


def test_pins_that_are_not_gpio_are_refused(gpio):
    factory = JetsonFactory("BOARD", gpio=gpio)
    with pytest.raises(PinInvalidPin):
        DigitalOutputDevice(1, pin_factory=factory)  # 3V3
    with pytest.raises(PinInvalidPin):
        DigitalOutputDevice(41, pin_factory=factory)
    with pytest.raises(ValueError, match="invalid"):  # header pin 3 is I2C on a Jetson
        DigitalOutputDevice(3, pin_factory=factory)


def test_pull_requests_warn_that_an_external_resistor_is_needed(gpio, caplog):
    factory = JetsonFactory("BOARD", gpio=gpio)
    with caplog.at_level(logging.WARNING):
        button = DigitalInputDevice(15, pull_up=True, pin_factory=factory)
    assert "external resistor" in caplog.text
    # pull_up_down is never passed: Jetson.GPIO would ignore it anyway
    assert all_of([c for c in gpio.calls if c[0] == "setup"], lambda c: c[3] == gpio.PUD_OFF,
                  "setup calls")
    button.close()


def test_the_alarm_panel_runs_on_the_jetson_layer(gpio):
    settings = GpioSettings(pin_factory="jetson", panic=[{"pin": 7}], ack={"pin": 11},
                            siren={"pin": 12}, light={"pin": 13})
    panel = None

    def press(button):
        panel.siren.play("panic", [0.5, 0.5], cause=f"button:{button.name}")

    panel = Panel(settings, JetsonFactory("BOARD", gpio=gpio), on_press=press,
                  siren_max_s=5)
    assert gpio.level[12] == 0 and gpio.level[13] == 0
    gpio.drive(7, 0).join()
    assert gpio.level[12] == 1
    panel.close()
    assert gpio.level.get(12) == 0 and 12 in gpio.cleaned


def test_edges_from_the_library_thread_reach_debounced_buttons(gpio):
    settings = GpioSettings(panic=[{"pin": 7, "bounce_ms": 50}])
    presses = []
    panel = Panel(settings, JetsonFactory("BOARD", gpio=gpio), on_press=presses.append)
    for level in (0, 1, 0, 1, 0):
        thread = gpio.drive(7, level)
        if thread:
            thread.join()
    wait_for(lambda: presses, 1, "a press")
    assert len(presses) == 1 and panel.buttons[0].bounces == 4
    panel.close()


@pytest.mark.filterwarnings("ignore::gpiozero.exc.PinFactoryFallback")
def test_factory_choice(monkeypatch, tmp_path):
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    assert type(factory_mod.make_pin_factory("mock")).__name__ == "MockFactory"
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    assert type(factory_mod.make_pin_factory("auto")).__name__ == "MockFactory"
    with pytest.raises(factory_mod.PinFactoryError, match=r"Jetson\.GPIO"):
        factory_mod.make_pin_factory("jetson")  # not installed here
    with pytest.raises(factory_mod.PinFactoryError, match="unknown pin factory"):
        factory_mod.make_pin_factory("wiringpi")
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY")
    with pytest.raises(factory_mod.PinFactoryError, match="mock"):
        factory_mod.make_pin_factory("auto")  # x86 test machine: no GPIO at all
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/compatible").write_bytes(b"nvidia,p3768\x00nvidia,tegra234")
    assert factory_mod.is_jetson(tmp_path)
    assert not factory_mod.is_jetson(tmp_path / "nothing")


def test_safe_modes_default_pins_are_the_standard_header_positions_on_a_jetson(gpio):
    """The image's safe defaults name BCM pins (panic GPIO17 = header pin 11, siren
    GPIO27 = pin 13): on a Jetson they must be read as BCM, or pin 17 (3V3) kills the panel."""
    from firmware import config
    from firmware.fallback import DEFAULTS

    settings = GpioSettings.model_validate(config.tomllib.loads(DEFAULTS.read_text())["gpio"])
    panel = Panel(settings, JetsonFactory(settings.jetson_numbering, gpio=gpio))
    try:
        assert gpio.direction[13] == gpio.OUT and gpio.level[13] == 0  # the siren, off
        assert gpio.direction[11] == gpio.IN  # the panic button
    finally:
        panel.close()
