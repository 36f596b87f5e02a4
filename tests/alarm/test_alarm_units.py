"""Rhythms, the output deadline, settings validation, arming windows, status LED modes."""

from __future__ import annotations

import threading
import time

import pytest
from alarm_kit import wait_for
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.gpio.pattern import PatternOutput, level_at
from drivers.gpio.settings import GpioSettings
from firmware import config
from firmware.alarm.arming import ArmState, in_window, parse_window
from firmware.alarm.settings import AlarmSettings
from firmware.alarm.status import choose_mode, faulty_components, mqtt_connected
from firmware.wiring.shared import Shared


def test_level_at_walks_the_rhythm():
    steps = [0.4, 0.3, 0.4, 1.5]
    assert level_at(steps, 0.0) == (True, 0.4)
    assert level_at(steps, 0.5)[0] is False
    assert level_at(steps, 0.8)[0] is True
    assert level_at(steps, 1.2)[0] is False
    assert level_at(steps, 2.6 + 0.1)[0] is True  # second period
    assert level_at([], 1e6) == (True, float("inf"))


@settings(deadline=None)
@given(st.lists(st.floats(0.01, 5), min_size=1, max_size=8).map(
    lambda xs: xs if len(xs) % 2 == 0 else [*xs, 0.5]), st.floats(0, 1000))
def test_level_at_always_gives_a_positive_wait(steps, elapsed):
    level, left = level_at(steps, elapsed)
    assert isinstance(level, bool) and 0 < left <= max(steps) + 1e-9


def make_output(**kw) -> tuple[PatternOutput, object, list]:
    factory = MockFactory()
    changes: list = []
    device = DigitalOutputDevice(5, pin_factory=factory)
    out = PatternOutput("siren", device, on_change=lambda *a: changes.append(a), **kw)
    return out, factory.pin(5), changes


def test_output_obeys_max_on_s_whatever_duration_is_asked():
    out, pin, changes = make_output(max_on_s=0.5)
    t0 = time.monotonic()
    out.play("panic", [0.05, 0.05], cause="test", duration_s=100)
    wait_for(lambda: not out.active, 10, "the deadline")  # not 100 s; exactness: bench/alarm.py
    assert time.monotonic() - t0 >= 0.45
    assert pin.state is False and changes[-1][1:3] == ("off", "timeout")
    # the rhythm really played: about 10 on/off changes in 0.5 s
    assert out.changes >= 4
    out.close()


def test_playing_again_does_not_extend_the_limit():
    out, pin, _ = make_output(max_on_s=0.6)
    out.play("panic", [0.05, 0.05], cause="cmd:1", duration_s=0.4)
    time.sleep(0.3)  # on purpose: half-way through the first stretch
    until = out.play("titir", [0.02, 0.02], cause="cmd:2", duration_s=100)  # still on
    assert until - time.time() <= 0.3 + 0.05
    wait_for(lambda: not out.active, 10, "the limit")  # not the 100 s asked for
    assert pin.state is False
    # once off, a new request starts a new stretch
    out.on(cause="cmd:3", duration_s=0.2)
    assert pin.state is True and out.remaining_s() > 0.1
    wait_for(lambda: not out.active, 2, "the short stretch")
    out.close()


def test_output_keeps_working_when_the_callback_raises():
    out, pin, _ = make_output(max_on_s=0.1)
    out.on_change = lambda *a: (_ for _ in ()).throw(RuntimeError("bus gone"))
    out.on(cause="test")
    assert pin.state is True
    wait_for(lambda: not pin.state, 2, "the deadline despite the failing callback")
    out.close()


def test_output_retries_a_failed_switch_off():
    out, pin, _ = make_output()
    out.on(cause="test")
    real_off = out.device.off
    failures = {"left": 2}

    def flaky_off():
        if failures["left"]:
            failures["left"] -= 1
            raise OSError("EIO")
        real_off()

    out.device.off = flaky_off
    out.off(cause="test")  # does not raise: the failure is logged, the worker insists
    wait_for(lambda: not pin.state, 2, "the worker to insist on off")
    out.close()


def test_concurrent_play_and_off_leave_a_consistent_state():
    out, pin, _ = make_output(max_on_s=5)

    def hammer(i):
        for _ in range(200):
            out.play("x", [0.001, 0.001], cause=str(i)) if i % 2 else out.off(cause=str(i))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.off(cause="end")
    wait_for(lambda: pin.state is False and not out.active, 10, "the output off")
    out.close()


@pytest.mark.parametrize(("section", "data", "why"), [
    ("alarm", {"patterns": {"panic": [0.5]}}, "pairs"),
    ("alarm", {"patterns": {"panic": [0.5, -1]}}, "durations"),
    ("alarm", {"patterns": {"fire": [0.5, 0.5]}}, "panic"),
    ("alarm", {"kind_patterns": {"fire": "nope"}}, "no pattern named"),
    ("alarm", {"schedule": ["22-05"]}, "HH:MM-HH:MM"),
    ("alarm", {"timezone": "Mars/Olympus"}, "unknown time zone"),
    ("alarm", {"siren_max_s": 0}, "greater than 0"),
    ("gpio", {"siren": {"pin": 17}, "panic": [{"pin": 17}]}, "both use pin 17"),
    ("gpio", {"panic": [{"pin": 4, "pull_up": "external"}]}, "active_high"),
    ("gpio", {"panic": [{"pin": 4, "active_high": True}]}, "only for"),
    ("gpio", {"panic": [{"pin": 4, "kind": "Fire!"}]}, "pattern"),
    ("gpio", {"pin_factory": "wiringpi"}, "pin_factory"),
])
def test_bad_config_names_the_field(section, data, why):
    with pytest.raises(config.ConfigError) as err:
        config.parse({"node": {"id": "n1"}, section: data})
    assert why in str(err.value) and section in str(err.value)


def test_defaults_and_example_config_are_valid():
    gpio = GpioSettings()
    alarm = AlarmSettings()
    assert gpio.panic == [] and alarm.pattern_for("fire")[0] == "fire"
    assert alarm.pattern_for("unknown-kind")[0] == "panic"
    cfg = config.load("examples/ronda.toml")
    assert cfg.gpio.siren is not None and cfg.alarm.siren_max_s > 0


def test_windows():
    assert parse_window("22:00-05:00") == (1320, 300)
    assert in_window(23 * 60, (1320, 300)) and in_window(0, (1320, 300))
    assert not in_window(300, (1320, 300)) and not in_window(12 * 60, (1320, 300))
    assert in_window(9 * 60, (8 * 60, 17 * 60)) and not in_window(17 * 60, (480, 1020))
    assert in_window(123, (0, 0))  # start == end: all day
    arm = ArmState("schedule", ["08:00-09:00", "22:00-05:00"])
    import datetime as dt
    assert arm.armed(dt.datetime(2026, 1, 1, 8, 30)) and not arm.armed(dt.datetime(2026, 1, 1, 12))
    with pytest.raises(ValueError):
        arm.set("schedule", ["8-9"])
    assert arm.schedule == ["08:00-09:00", "22:00-05:00"]  # unchanged after a refusal


def test_status_modes():
    base = dict(holding=False, alarm=False, fault=False, connected=True, booting=False)
    assert choose_mode(**base) == "ok"
    assert choose_mode(**{**base, "connected": None}) == "ok"  # unknown is not a fault
    assert choose_mode(**{**base, "connected": False}) == "no_network"
    assert choose_mode(**{**base, "booting": True}) == "booting"
    assert choose_mode(**{**base, "fault": True, "connected": False}) == "fault"
    assert choose_mode(**{**base, "alarm": True, "fault": True}) == "alarm"
    assert choose_mode(**{**base, "holding": True, "alarm": True}) == "holding"
    health = {"components": {"recorder": {"running": False}, "alarm": {"running": False},
                             "detect": {"error": "boom"}, "mqtt": {"running": True}}}
    assert faulty_components(health) == ["recorder", "detect"]
    assert mqtt_connected(Shared()) is None
    assert mqtt_connected(Shared(mqtt_connected=lambda: False)) is False
    assert mqtt_connected(Shared(mqtt_connected=lambda: 1 / 0)) is None
    assert mqtt_connected(Shared(mqtt_connected="yes")) is None

    class Bridge:
        class link:  # shaped like the MQTT area's bridge
            connected = False

    assert mqtt_connected(Shared(mqtt=Bridge())) is False
    assert mqtt_connected(Shared(mqtt=object())) is None


def test_status_led_follows_the_network_and_alarm(make_node):
    connected = {"value": True}
    node = make_node(shared={"mqtt_connected": lambda: connected["value"]})
    wait_for(lambda: node.components[0].status.mode == "ok", 3, "ok")
    connected["value"] = False
    node.components[0]._next_health = 0  # re-evaluate now rather than in 5 s
    wait_for(lambda: node.components[0].status.mode == "no_network", 3, "no_network")
    assert node.panel.status_led.label == "no_network"
    node.tap()
    wait_for(lambda: node.components[0].status.mode == "alarm", 3, "alarm")
    health = node.components[0].health()
    assert health["state"] == "alarm" and health["outputs"]["siren"]["state"] == "panic"
    assert health["buttons"]["panic:pos"]["presses"] == 1


def test_close_retries_a_failed_final_off():
    out, pin, _ = make_output()
    out.on(cause="test")
    assert pin.state is True
    real_off = out.device.off
    fails = [1]

    def flaky_off():
        if fails:
            fails.pop()
            raise OSError("i2c expander busy")
        real_off()

    out.device.off = flaky_off
    out.close()
    assert pin.state is False, "the output stayed on after close()"
