"""Choosing the gpiozero pin factory from config: Pi factories, Jetson, or mock pins.

Every device is created with an explicit ``pin_factory=`` (never gpiozero's global
default), so tests can run several independent panels in one process.

Example::

    factory = make_pin_factory("mock")
    button = Button(17, pin_factory=factory)
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from gpiozero.pins import Factory

FACTORIES = {
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
    "mock": "gpiozero.pins.mock:MockFactory",
}


class PinFactoryError(RuntimeError):
    """The configured pin factory cannot be used on this machine."""


def is_jetson(root: Path = Path("/")) -> bool:
    """Whether this board is an NVIDIA Jetson (device tree says tegra, or L4T is installed)."""
    compatible = root / "proc/device-tree/compatible"
    try:
        if b"nvidia,tegra" in compatible.read_bytes():
            return True
    except OSError:
        pass
    return (root / "etc/nv_tegra_release").exists()


def board_model(root: Path = Path("/")) -> str:
    """The board's model from the device tree ('Raspberry Pi 5 Model B Rev 1.0'), or ''."""
    try:
        return (root / "proc/device-tree/model").read_bytes().rstrip(b"\0").decode(
            errors="replace")
    except OSError:
        return ""


def real_board(root: Path = Path("/")) -> str:
    """The model of a board with real GPIO (a Raspberry Pi or a Jetson), else ''."""
    model = board_model(root)
    if "Raspberry Pi" in model or is_jetson(root):
        return model or "NVIDIA Jetson"
    return ""


def no_factory_hint(root: Path = Path("/")) -> str:
    """What to do when no pin factory works. Never `mock` on a real board: simulated pins
    would make every check green while the panic button is dead."""
    model = board_model(root)
    if "Raspberry Pi" in model:
        return (f"this {model} needs the lgpio pin factory (Raspberry Pi 5: only lgpio "
                "works): install ronda with the `pi` extra (pip install lgpio; Debian: "
                "python3-lgpio) and add the ronda user to the gpio group")
    if is_jetson(root):
        return 'set [gpio] pin_factory = "jetson" and pip install Jetson.GPIO'
    return ('no GPIO on this machine; on a development machine only, [gpio] pin_factory = '
            '"mock" simulates the pins')


def make_pin_factory(name: str = "auto", jetson_numbering: str = "BOARD") -> Factory:
    """A pin factory by config name: auto, lgpio, rpigpio, pigpio, native, jetson or mock.

    `auto` picks the Jetson layer on a Jetson (unless GPIOZERO_PIN_FACTORY says otherwise),
    else gpiozero's own choice (GPIOZERO_PIN_FACTORY, then lgpio, rpigpio, pigpio, native).
    """
    env = os.environ.get("GPIOZERO_PIN_FACTORY")
    if name == "jetson" or (name == "auto" and not env and is_jetson()):
        from drivers.gpio.jetson import JetsonFactory

        try:
            return JetsonFactory(numbering=jetson_numbering)
        except ImportError as exc:
            raise PinFactoryError(f"jetson pin factory needs Jetson.GPIO "
                                  f"(pip install Jetson.GPIO): {exc}") from exc
    if name == "auto":
        if env:
            name = env
        else:
            from gpiozero import Device

            try:
                return Device._default_pin_factory()
            except Exception as exc:
                raise PinFactoryError(f"no working pin factory ({exc}): "
                                      f"{no_factory_hint()}") from exc
    if name not in FACTORIES:
        raise PinFactoryError(f"unknown pin factory {name!r}; one of: auto, jetson, "
                              + ", ".join(FACTORIES))
    module_name, class_name = FACTORIES[name].split(":")
    try:
        return getattr(importlib.import_module(module_name), class_name)()
    except Exception as exc:
        raise PinFactoryError(f"pin factory {name} unavailable ({exc}): "
                              f"{no_factory_hint()}") from exc
