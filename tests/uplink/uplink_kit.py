"""Helpers of the uplink tests (a module of its own: `conftest` is ambiguous when the
whole suite runs, every test directory has one)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def probe(path: Path | str) -> dict[str, Any]:
    """ffprobe's view of the first video stream and the container."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height:format=duration,format_name",
                          "-of", "json", str(path)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    return {**(doc.get("streams") or [{}])[0], **doc.get("format", {})}
