"""The technician's ronda.toml on the FAT partition: blanking what must not stay there
(inline secrets, a one-time `format_device`) while keeping comments and layout."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from firmware import config
from firmware.provision import tomlwrite

_HEADER = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
_ASSIGN = re.compile(r"^(\s*)(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.-]+)(\s*=\s*)(.*)$")


def strip_secrets(text: str) -> str:
    """The boot file with `[secrets]` values and `provision.storage.format_device` blanked,
    comments and layout kept."""
    out: list[str] = []
    table = ""
    skipping: str | None = None  # closing quote of a multi-line string being dropped
    for line in text.splitlines():
        if skipping:
            if skipping in line:
                skipping = None
            continue
        header = _HEADER.match(line)
        if header:
            table = header.group(1).strip()
            out.append(line)
            continue
        match = _ASSIGN.match(line)
        key = match.group(2).strip("\"'") if match else ""
        blank = match and ((table == "secrets") or
                           (table == "provision.storage" and key == "format_device"))
        if match and blank:
            value = match.group(4).strip()
            for quote in ('"""', "'''"):
                if value.startswith(quote) and value.count(quote) == 1:
                    skipping = quote
            was_set = value not in ('""', "''") and not value.startswith(('""  #', "''  #"))
            note = f"  # stored on the node {time.strftime('%Y-%m-%d')}" if was_set else ""
            if table != "secrets" and was_set:
                note = f"  # done {time.strftime('%Y-%m-%d')}: set again to format again"
            if was_set:
                out.append(f'{match.group(1)}{match.group(2)}{match.group(3)}""{note}')
            else:
                out.append(line)
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def still_secret(text: str) -> bool:
    """True if the text still holds a secret or a format order (or is not TOML)."""
    try:
        data = config.tomllib.loads(text)
    except config.tomllib.TOMLDecodeError:
        return True
    storage = data.get("provision", {}).get("storage", {})
    return any(data.get("secrets", {}).values()) or bool(storage.get("format_device"))


def strip_boot_copy(path: Path, text: str) -> str:
    """Rewrite the boot file without secrets (atomically); returns the new text."""
    stripped = strip_secrets(text)
    if still_secret(stripped):  # unusual layout: rewrite the whole file, safely
        data = config.tomllib.loads(text)
        data["secrets"] = dict.fromkeys(data.get("secrets", {}), "")
        data.get("provision", {}).get("storage", {}).pop("format_device", None)
        stripped = ("# Rewritten by ronda firstboot: secrets are stored on the node.\n"
                    + tomlwrite.dumps(data))
    if stripped != text:
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(stripped, encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return stripped
