"""The topic contract: everything a node publishes or hears lives under `<prefix>/<node_id>`.

Example::

    t = Topics("ronda/v1", "mgl-rw05")
    t.status                 # 'ronda/v1/mgl-rw05/status'
    t.event_snapshot("abc")  # 'ronda/v1/mgl-rw05/events/abc/snapshot'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """Topic names of one node."""

    prefix: str
    node: str

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.node}"

    @property
    def status(self) -> str:
        """Retained `online` / `offline` (the last will)."""
        return f"{self.root}/status"

    @property
    def health(self) -> str:
        """Retained JSON health report."""
        return f"{self.root}/health"

    @property
    def events(self) -> str:
        """Event JSON, QoS 1, not retained."""
        return f"{self.root}/events"

    def event_snapshot(self, event_id: str) -> str:
        """The JPEG of one event, QoS 1, not retained, sent just before the event."""
        return f"{self.root}/events/{event_id}/snapshot"

    def camera_snapshot(self, camera: str) -> str:
        """The latest JPEG of a camera, retained."""
        return f"{self.root}/cameras/{camera}/snapshot"

    def output(self, name: str) -> str:
        """Retained JSON state of an output (siren, light...)."""
        return f"{self.root}/outputs/{name}"

    def live(self, camera: str) -> str:
        """Retained JSON state of a camera's live push (what, where, since, bitrate)."""
        return f"{self.root}/live/{camera}"

    def command(self, action: str) -> str:
        """Where a signed command for `action` is sent to this node."""
        return f"{self.root}/cmd/{action}"

    @property
    def commands(self) -> str:
        """The subscription that hears every command."""
        return f"{self.root}/cmd/+"

    @property
    def reply(self) -> str:
        """The node's answers to commands, carrying the command id."""
        return f"{self.root}/reply"


def safe_level(name: str) -> str:
    """`name` made usable as one topic level (no `/`, `+`, `#`, NUL)."""
    return "".join("_" if ch in "/+#\0" else ch for ch in name) or "_"
