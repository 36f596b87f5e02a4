"""Access to the JSON Schemas in `mqtt/schemas/` (shipped as package data).

`load("event")` returns the schema of the `events` payload; `SCHEMAS` names each one
with the topic (relative to `<prefix>/<node>`) it describes.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

DIR = Path(__file__).resolve().parent / "schemas"

# schema name -> topic under <prefix>/<node> ('+' one level)
SCHEMAS = {
    "health": "health",
    "event": "events",
    "reply": "reply",
    "output": "outputs/+",
    "command": "cmd/+",
    "live": "live/+",
}


@cache
def load(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) called `name`."""
    return json.loads((DIR / f"{name}.json").read_text(encoding="utf-8"))


def for_topic(relative: str) -> str | None:
    """The schema name for a topic relative to the node root, e.g. 'events' -> 'event'."""
    parts = relative.split("/")
    for name, pattern in SCHEMAS.items():
        pat = pattern.split("/")
        if len(pat) == len(parts) and all(p in ("+", q) for p, q in zip(pat, parts, strict=True)):
            return name
    return None
