"""`[mqtt]` config: bad values are named at check-config time, not at the first connect."""

from __future__ import annotations

import pytest

from firmware.config import ConfigError, parse


@pytest.mark.parametrize(("mqtt", "message"), [
    ({"brokers": ["http://broker:1883"]}, "scheme must be mqtt:// or mqtts://"),
    ({"brokers": []}, "at least 1 item"),
    ({"command_keys": ["not-a-key"]}, "command_keys[0] is not an Ed25519 public key"),
    ({"command_keys": ["AAAA"]}, "32 bytes"),
    ({"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect_max_s must be >="),
    ({"outbox_max_events": 1}, "greater than or equal to 10"),
    ({"prefix": "ronda/#"}, "pattern"),
    ({"prefix": "ronda/v1/"}, "no leading, trailing or double '/'"),
    ({"protocol": "4"}, "'5' or '3.1.1'"),
])
def test_bad_values_named(mqtt: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"node": {"id": "rw05"}, "mqtt": mqtt})
    assert message in str(err.value)


def test_defaults_and_valid(keypair: tuple) -> None:
    cfg = parse({"node": {"id": "rw05"}, "mqtt": {
        "brokers": ["mqtts://cc.example:8883", "mqtt://10.0.0.2"],
        "command_keys": [keypair[1]], "homeassistant": True}})
    assert cfg.mqtt.prefix == "ronda/v1" and cfg.mqtt.health_interval_s == 60
    assert cfg.mqtt.command_window_s == 120 and cfg.mqtt.command_timeout_s == 5
