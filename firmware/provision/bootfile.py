"""The technician's ronda.toml on the FAT partition: blanking what must not stay there
(inline secrets, a one-time `format_device`) while keeping comments and layout.

Edited through `tomlkit`, which round-trips a TOML document (comments, order, quoting)
and only rewrites the values changed.
"""

from __future__ import annotations

import time
from pathlib import Path

import tomlkit
from tomlkit.items import Table

from support.files import atomic_write


def _blank(table: Table, key: str, note: str) -> None:
    value = table[key]
    if value in ("", None):
        return
    item = tomlkit.string("")
    item.comment(note)
    table[key] = item


def strip_secrets(text: str) -> str:
    """The boot file with `[secrets]` values and `provision.storage.format_device` blanked,
    comments and layout kept."""
    doc = tomlkit.parse(text)
    today = time.strftime("%Y-%m-%d")
    secrets = doc.get("secrets")
    if isinstance(secrets, Table):
        for key in list(secrets.keys()):
            _blank(secrets, key, f"stored on the node {today}")
    storage = doc.get("provision", {}).get("storage")
    if isinstance(storage, Table) and "format_device" in storage:
        _blank(storage, "format_device", f"done {today}: set again to format again")
    return tomlkit.dumps(doc)


def strip_boot_copy(path: Path, text: str) -> str:
    """Rewrite the boot file without secrets (atomically); returns the new text."""
    stripped = strip_secrets(text)
    if stripped != text:
        atomic_write(path, stripped)
    return stripped
