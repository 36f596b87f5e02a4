"""Home Assistant MQTT discovery: read-only entities for one node.

Published retained under `<ha_prefix>/<component>/<node>/<object>/config` when
`mqtt.homeassistant = true`. Every entity uses the node's `status` topic for
availability. Entities: status (connectivity), panic and person (from the `events`
stream), storage (recorder health), temperature (health). Nothing is commandable from
Home Assistant: commands need a signature.

The format is Home Assistant's current one: `default_entity_id` ("<component>.<slug>",
since 2025.10) instead of `object_id` (deprecated in 2025.10, no longer honoured from
2026.4), and an `origin`. tests/mqtt/ha_discovery.schema.json holds the configs to the
options Home Assistant documents.
"""

from __future__ import annotations

import re
from typing import Any

from mqtt.topics import Topics


def _device(topics: Topics, name: str, version: str) -> dict[str, Any]:
    return {"identifiers": [f"ronda_{topics.node}"], "name": name or f"Ronda {topics.node}",
            "manufacturer": "Ronda", "model": "RW watch post NVR", "sw_version": version}


def slug(text: str) -> str:
    """An entity id slug: lower-case letters, digits and `_` only."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "node"


def discovery_messages(topics: Topics, *, ha_prefix: str = "homeassistant", name: str = "",
                       version: str = "") -> list[tuple[str, dict[str, Any]]]:
    """(topic, config) pairs for every entity of this node."""
    node = topics.node
    device = _device(topics, name, version)
    origin = {"name": "Ronda", "sw_version": version or "unknown"}
    avail = {"availability_topic": topics.status, "payload_available": "online",
             "payload_not_available": "offline"}

    def entity(component: str, obj: str, **conf: Any) -> tuple[str, dict[str, Any]]:
        conf.setdefault("unique_id", f"ronda_{node}_{obj}")
        conf.setdefault("default_entity_id", f"{component}.ronda_{slug(node)}_{obj}")
        conf["device"] = device
        conf["origin"] = origin
        if obj != "status":
            conf.update(avail)
        return f"{ha_prefix}/{component}/{node}/{obj}/config", conf

    panic_tpl = ("{% if value_json.type in ['panic', 'alarm'] and value_json.kind == 'panic' %}"
                 "{{ 'ON' if value_json.phase == 'raised' else 'OFF' }}"
                 "{% else %}{{ 'ON' if this.state == 'on' else 'OFF' }}{% endif %}")
    person_tpl = ("{% if value_json.type == 'object' and value_json.label == 'person' %}"
                  "{{ 'OFF' if value_json.phase == 'end' else 'ON' }}"
                  "{% else %}{{ 'ON' if this.state == 'on' else 'OFF' }}{% endif %}")
    return [
        entity("binary_sensor", "status", name="Status", state_topic=topics.status,
               device_class="connectivity", payload_on="online", payload_off="offline"),
        entity("binary_sensor", "panic", name="Panic", state_topic=topics.events,
               device_class="safety", value_template=panic_tpl),
        entity("binary_sensor", "person", name="Person", state_topic=topics.events,
               device_class="occupancy", value_template=person_tpl, off_delay=120),
        entity("sensor", "storage", name="Recordings storage", state_topic=topics.health,
               value_template="{{ (value_json.storage or {}).get('state', 'n/a') }}",
               json_attributes_topic=topics.health,
               json_attributes_template="{{ (value_json.storage or {}) | tojson }}"),
        entity("sensor", "temperature", name="Temperature", state_topic=topics.health,
               device_class="temperature", unit_of_measurement="°C",
               state_class="measurement", value_template="{{ value_json.temperature_c }}"),
    ]
