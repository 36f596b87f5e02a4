"""A small TOML writer for the installed config (the node has no tomli-w).

Handles what ronda.toml holds: tables, arrays of tables, strings, numbers, booleans,
arrays of scalars. Keys that are not bare are quoted.
"""

from __future__ import annotations

import json
import re
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _is_table(value: Any) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dumps(data: dict[str, Any], _prefix: str = "") -> str:
    """`data` as TOML text; `tomllib.loads(dumps(d)) == d` for the types above."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items()
             if not _is_table(v) and not _is_table_array(v)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, value in data.items():
        name = f"{_prefix}{_key(key)}"
        if _is_table(value):
            out += f"\n[{name}]\n" + dumps(value, name + ".")
        elif _is_table_array(value):
            for item in value:
                out += f"\n[[{name}]]\n" + dumps(item, name + ".")
    return out
