"""What the page needs from the rest of the node, as plain callbacks (built by
`firmware/wiring/web.py`; tests may build one from real parts directly)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.cameras.base import StreamInput


@dataclass
class Node:
    """The node as the page sees it."""

    name: str
    health: Callable[[], dict[str, Any]]  # Daemon.health(): components' figures
    cameras: Callable[[], list[str]]
    live_input: Callable[[str], StreamInput | None]  # the (sub)stream the live view copies
    snapshot: Callable[[str], bytes | None]  # a JPEG of a camera now
    # (action, args, user) -> (ok, message): 'ack' and 'siren', handled by the alarm area
    command: Callable[[str, dict[str, Any], str], tuple[bool, str]]
    recordings: Path | None  # the recordings store (None: recorder off)
    patterns: tuple[str, ...] = ()  # the siren rhythms an operator may test
