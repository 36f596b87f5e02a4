"""GPIO on the boards the city buys: a Pi 5 is told to use lgpio, and no message ever
suggests simulated pins on a real board (doctor would be green with a dead panic button)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.gpio import factory as factory_mod
from firmware import config
from firmware.provision.devices import check_gpio


def fake_board(tmp_path: Path, model: str) -> Path:
    tree = tmp_path / "proc/device-tree"
    tree.mkdir(parents=True)
    (tree / "model").write_bytes(model.encode() + b"\0")
    return tmp_path


def test_a_pi5_without_lgpio_is_told_to_install_it_never_mock(tmp_path, monkeypatch):
    root = fake_board(tmp_path, "Raspberry Pi 5 Model B Rev 1.0")
    assert factory_mod.real_board(root).startswith("Raspberry Pi 5")
    hint = factory_mod.no_factory_hint(root)
    assert "lgpio" in hint and "mock" not in hint
    monkeypatch.setattr(factory_mod, "board_model", lambda root=None: "Raspberry Pi 5")
    monkeypatch.delenv("GPIOZERO_PIN_FACTORY", raising=False)
    from gpiozero import Device

    def no_factory():
        raise RuntimeError("Unable to load any default pin factory!")

    monkeypatch.setattr(Device, "_default_pin_factory", staticmethod(no_factory))
    with pytest.raises(factory_mod.PinFactoryError) as info:
        factory_mod.make_pin_factory("auto")
    assert "lgpio" in str(info.value) and "mock" not in str(info.value)
    with pytest.raises(factory_mod.PinFactoryError) as info:
        factory_mod.make_pin_factory("rpigpio")  # RPi.GPIO: absent here, broken on a Pi 5
    assert "mock" not in str(info.value)


def test_a_plain_pc_may_hear_about_mock_pins(tmp_path):
    assert "mock" in factory_mod.no_factory_hint(tmp_path)
    assert factory_mod.real_board(tmp_path) == ""


def test_doctor_fails_mock_pins_on_a_real_board(monkeypatch):
    cfg = config.parse({"node": {"id": "rw05"},
                        "gpio": {"pin_factory": "mock", "panic": [{"pin": 17}],
                                 "siren": {"pin": 27}}})
    assert check_gpio(cfg).status == "ok"  # a development machine: simulated pins are fine
    monkeypatch.setattr(factory_mod, "real_board", lambda root=None: "Raspberry Pi 5")
    check = check_gpio(cfg)
    assert check.status == "fail" and "not wired" in check.detail
    assert "mock" not in check.hint
