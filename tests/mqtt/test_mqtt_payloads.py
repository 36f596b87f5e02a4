"""The health document from realistic and from odd daemon reports, held to the schema."""

from __future__ import annotations

import json

from mqtt_helpers import validate

from mqtt.link import encode
from mqtt.payloads import health_payload

FULL = {
    "node": "rw05", "version": "0.1.0", "ts": 1795830000.5, "uptime_s": 3600.0,
    "last_error": "detect: RuntimeError('x')",
    "components": {
        "system": {"cpu_percent": 23.5, "memory": {"total": 4 << 30, "available": 1 << 30},
                   "temperature_c": 61.2, "throttled": ["under_voltage",
                                                        "under_voltage_since_boot"],
                   "clock_synced": True, "running": True, "crashes": 0},
        "cameras": {"cameras": {"gate": {"state": "online", "reason": "", "fps": 14.8,
                                         "reconnects": 2, "last_error": ""},
                                "yard": {"state": "offline", "reason": "no route",
                                         "fps": None}}, "running": True, "crashes": 0},
        "recorder": {"state": "ok", "bytes_used": 10 << 30, "quota": 100 << 30,
                     "free_bytes": 50 << 30, "oldest_footage_h": 71.5, "running": True},
        "detect": {"inference_ms_p50": 17.2, "frames_in": 1000, "running": True},
        "alarm": {"state": "idle", "running": True},
        "mqtt": {"connected": True, "running": True, "crashes": 1},
    },
}


def test_full_report() -> None:
    doc = health_payload(FULL, mqtt={"connected": True, "broker": "mqtt://x:1883",
                                     "protocol": "5"},
                         outbox={"depth": 3, "bytes": 900, "drops": 1, "last_seq": 40,
                                 "oldest_age_s": 2.5})
    validate("health", json.loads(encode(doc)))
    assert doc["undervoltage"] is True and doc["throttling"] is False
    assert doc["memory"]["used_percent"] == 75.0
    assert doc["cameras"]["gate"]["fps"] == 14.8 and doc["cameras"]["yard"]["state"] == "offline"
    assert doc["storage"]["state"] == "ok" and doc["detector_ms"] == 17.2
    assert doc["components"]["mqtt"] == {"running": True, "crashes": 1}
    assert doc["last_error"] == "detect: RuntimeError('x')"


def test_missing_and_odd_parts() -> None:
    for report in ({}, {"components": None},
                   {"components": {"cameras": {"cameras": ["not", "a", "dict"]},
                                   "system": "broken", "detect": {"error": "x"},
                                   "recorder": ["?"]}}):
        doc = health_payload(report, mqtt={"connected": False}, node="rw05",
                             outbox={"depth": 0, "bytes": 0, "drops": 0})
        assert doc["node"] == "rw05"
        validate("health", json.loads(encode(doc)))
        assert doc["cameras"] == {} and doc["storage"] is None and doc["cpu_percent"] is None


def test_discovery_configs_hold_to_home_assistants_options() -> None:
    """Every entity against the hand-written schema of Home Assistant's documented options
    (tests/mqtt/ha_discovery.schema.json); a node id with `-` gives a valid entity id."""
    import json
    from pathlib import Path

    import jsonschema

    from mqtt.discovery import discovery_messages
    from mqtt.topics import Topics

    schema = json.loads(Path(__file__).with_name("ha_discovery.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    check = jsonschema.Draft202012Validator(schema)
    messages = discovery_messages(Topics("ronda/v1", "mgl-rw05"), version="1.2")
    for _topic, conf in messages:
        check.validate(conf)
    ids = {conf["default_entity_id"] for _, conf in messages}
    assert "binary_sensor.ronda_mgl_rw05_panic" in ids
    bad = dict(messages[0][1], object_id="ronda_mgl_rw05_status")
    assert not check.is_valid(bad), "the deprecated object_id is refused"
