"""The status LED means what docs/technician.md says: one rhythm per situation, chosen
from the node's real health report, and first boot drives the same LED."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alarm_kit import wait_for
from gpiozero.pins.mock import MockFactory

from drivers.gpio.settings import GpioSettings
from firmware.alarm.status import RHYTHMS
from firmware.provision.led import FirstbootLed, status_led_settings

ROOT = Path(__file__).resolve().parents[2]
CAMERAS_OK = {"cameras": {"gang-utara": {"state": "online"}}}


def health(cameras=CAMERAS_OK, recorder=None) -> dict:
    parts = {"cameras": cameras}
    if recorder is not None:
        parts["recorder"] = recorder
    return {"components": parts}


@pytest.mark.parametrize(("report", "shared", "mode"), [
    (health(), {}, "ok"),
    (health(), {"mqtt_connected": lambda: False}, "no_network"),
    (health(cameras={"cameras": {"gang-utara": {"state": "offline"}}}), {}, "camera_offline"),
    (health(recorder={"state": "degraded", "reason": "disk missing"}), {}, "storage"),
    (health(recorder={"state": "degraded", "reason": "read-only"},
            cameras={"cameras": {"a": {"state": "offline"}}}), {}, "storage"),
    (health(), {"config_rejected": "config rejected: node.id: bad"}, "config_rejected"),
    ({"components": {"recorder": {"running": False, "error": "boom"}}}, {}, "fault"),
])
def test_each_situation_has_its_pattern(make_node, report, shared, mode):
    node = make_node(start=False, shared=shared, gpio={"status_led": {"pin": 25}})
    comp = node.components[0]
    comp.node_health = lambda: report
    comp.health_every_s = 0.05
    comp.boot_grace_s = 0.0  # "booting" lasts until the broker answers or this passes
    node.start()
    led = node.panel.status_led
    wait_for(lambda: comp.status.mode == mode and led.label == mode, 5, f"mode {mode}")
    assert RHYTHMS[mode]  # a rhythm, not steady light: a frozen daemon cannot keep it


def test_rhythms_are_distinct_and_the_docs_table_lists_each():
    rhythms = [tuple(r) for r in RHYTHMS.values()]
    assert len(set(rhythms)) == len(rhythms)
    doc = (ROOT / "docs/technician.md").read_text()
    table = {m for m in re.findall(r"^\| `?([a-z_]+)`? \|", doc, re.M)}
    assert set(RHYTHMS) <= table, set(RHYTHMS) - table


def test_first_boot_blinks_booting_then_shows_config_rejected(tmp_path):
    boot_file = tmp_path / "ronda.toml"
    boot_file.write_text('[gpio]\nstatus_led = { pin = 12 }\n[node]\nid = "BAD ID"\n')
    gpio = status_led_settings(boot_file)
    assert gpio.status_led.pin == 12  # the boot file's own [gpio], though node.id is bad
    factory = MockFactory()
    led = FirstbootLed(gpio, factory)
    led("applying")
    assert led.output.label == "booting" and factory.pin(12).state
    led("error")
    assert led.output.label == "config_rejected"
    led("ok")
    assert led.output.label == "off"
    led.close()
    assert not factory.pin(12).state
    garbage = tmp_path / "garbage.toml"
    garbage.write_text("[gpio\n")
    assert status_led_settings(garbage).status_led.pin == 23  # the image's default


def test_no_status_led_configured_is_no_error():
    led = FirstbootLed(GpioSettings(), MockFactory())
    led("applying")
    led.close()
