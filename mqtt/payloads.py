"""The JSON documents the node publishes, built from plain values (no firmware imports).

Each has a JSON Schema in `mqtt/schemas/` (`mqtt.schemas.load(name)`), which the tests
hold every published payload to.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from mqtt.topics import Topics

SCHEMA_VERSION = 1


def iso(ts: float) -> str:
    """UTC ISO 8601 with milliseconds, e.g. '2026-11-28T01:35:00.123Z'."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def event_payload(fields: dict[str, Any], node: str, topics: Topics,
                  has_snapshot: bool) -> dict[str, Any]:
    """An event as published on `events` (the outbox adds `seq`).

    `fields` is `firmware.events.Event.payload()`: id, ts, type, camera and the
    type's own fields. `snapshot` becomes the topic of the event's JPEG, or null.
    """
    doc = dict(fields)
    ts = float(doc.get("ts") or time.time())
    doc.update({
        "v": SCHEMA_VERSION,
        "node": node,
        "ts": ts,
        "time": iso(ts),
        "camera": doc.get("camera"),
        "snapshot": topics.event_snapshot(doc["id"]) if has_snapshot else None,
    })
    return doc


def _num(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _position(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(_num(v) is not None
                                                                    for v in value):
        return [float(value[0]), float(value[1])]
    return None


def health_payload(report: dict[str, Any], *, mqtt: dict[str, Any],
                   outbox: dict[str, Any], node: str = "") -> dict[str, Any]:
    """The `health` document from the daemon's health report.

    `report` is `{"node", "version", "ts", "uptime_s", "components": {...}, "last_error"}`;
    any component may be missing (an area not configured): its part is then null.
    """
    comps: dict[str, Any] = _dict(report.get("components"))
    system = _dict(comps.get("system"))
    flags = system.get("throttled")
    memory = system.get("memory") if isinstance(system.get("memory"), dict) else None
    if memory and memory.get("total"):
        memory = {**memory, "used_percent": round(
            100.0 * (1 - memory.get("available", 0) / memory["total"]), 1)}
    cameras: dict[str, Any] = {}
    for name, cam in _dict(_dict(comps.get("cameras")).get("cameras")).items():
        cam = cam if isinstance(cam, dict) else {}
        cameras[str(name)] = {"state": str(cam.get("state", "unknown")),
                              "fps": _num(cam.get("fps")),
                              "reason": cam.get("reason") or "",
                              **{k: v for k, v in cam.items()
                                 if k not in ("state", "fps", "reason")}}
    detect = comps.get("detect") if isinstance(comps.get("detect"), dict) else None
    detector_ms = _num((detect or {}).get("inference_ms_p50",
                                           (detect or {}).get("inference_ms")))
    ts = float(report.get("ts") or time.time())
    return {
        "v": SCHEMA_VERSION,
        "node": str(report.get("node") or node),
        "name": str(report.get("name") or ""),
        "location": _position(report.get("location")),
        "version": report.get("version") or system.get("version"),
        "ts": ts,
        "time": iso(ts),
        "uptime_s": _num(report.get("uptime_s")),
        "cpu_percent": _num(system.get("cpu_percent")),
        "memory": memory,
        "temperature_c": _num(system.get("temperature_c")),
        "throttled": flags if isinstance(flags, list) else None,
        "undervoltage": None if not isinstance(flags, list) else "under_voltage" in flags,
        "throttling": None if not isinstance(flags, list)
        else bool({"throttled", "freq_capped"} & set(flags)),
        "clock_synced": system.get("clock_synced"),
        "storage": comps.get("recorder") if isinstance(comps.get("recorder"), dict) else None,
        "cameras": cameras,
        "detector": detect,
        "detector_ms": detector_ms,
        "alarm": comps.get("alarm") if isinstance(comps.get("alarm"), dict) else None,
        "uplink": comps.get("uplink") if isinstance(comps.get("uplink"), dict) else None,
        "mqtt": mqtt,
        "outbox": outbox,
        "components": {str(name): {"running": bool(_dict(part).get("running", False)),
                                   "crashes": _int(_dict(part).get("crashes"))}
                       for name, part in comps.items()},
        "last_error": report.get("last_error") or None,
    }


def reply_payload(node: str, cmd_id: str | None, action: str | None, ok: bool,
                  message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """An answer on `reply`: carries the command's id (null if it had none)."""
    now = time.time()
    return {"v": SCHEMA_VERSION, "node": node, "id": cmd_id, "action": action, "ok": bool(ok),
            "message": str(message), "data": dict(data or {}), "ts": now}


def output_payload(name: str, state: str, cause: str, ts: float,
                   until: float | None) -> dict[str, Any]:
    """The retained state of one output on `outputs/<name>`."""
    return {"v": SCHEMA_VERSION, "name": name, "state": state, "cause": cause, "ts": ts,
            "time": iso(ts), "until": until}
