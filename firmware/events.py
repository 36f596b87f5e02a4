"""Typed events carried by the daemon's event bus.

Every event that the Command Center should hear about derives from `Event`: it has a
unique `id`, a wall-clock `ts` and a `type` that becomes the `type` field of the MQTT
payload. The MQTT wiring assigns the per-node `seq` when the event enters the outbox.

Other messages (requests between components, output changes) derive from `Message`:
they travel on the bus but are not events in the Command Center's sense.

This module imports nothing from the rest of the project, so every package of
`firmware/` can use it without creating import cycles.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar


def new_id() -> str:
    """A unique event id (UUID4 hex). Random, so not ordered in time: order events by
    `ts`, or by the per-node `seq` the outbox gives them."""
    return uuid.uuid4().hex


class Priority(IntEnum):
    """Outbox priority: when the outbox is full the lowest priority is dropped first."""

    LOW = 0  # camera, storage and power state churn
    NORMAL = 1  # object events (start, update and end), tamper
    HIGH = 2  # alarms: panic, fire; dropped last


@dataclass(frozen=True, kw_only=True)
class Message:
    """Anything on the bus."""


@dataclass(frozen=True, kw_only=True)
class Event(Message):
    """A Command Center event: published on `<root>/events` through the durable outbox."""

    type: ClassVar[str] = "event"
    priority: ClassVar[Priority] = Priority.NORMAL

    id: str = field(default_factory=new_id)
    ts: float = field(default_factory=time.time)
    camera: str | None = None
    # JPEG bytes, published separately on <root>/events/<id>/snapshot; not in the payload.
    snapshot: bytes | None = field(default=None, repr=False, compare=False)

    def payload(self) -> dict[str, Any]:
        """The JSON fields of this event (without `seq`, which the outbox adds)."""
        data = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "snapshot"
        }
        data["type"] = self.type
        data["snapshot"] = bool(self.snapshot)
        return data


# ---- alarm -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class AlarmEvent(Event):
    """The alarm state machine changed phase (raised, silenced, cleared)."""

    type: ClassVar[str] = "alarm"
    priority: ClassVar[Priority] = Priority.HIGH

    alarm_id: str
    kind: str  # panic | fire | remote | ...
    phase: str  # raised | silenced | cleared | recovered
    source: str  # "button:panic", "cmd:<key id>", "restart"
    presses: int = 1


@dataclass(frozen=True, kw_only=True)
class PanicEvent(AlarmEvent):
    """A volunteer pressed the panic button (the `raised` phase of a panic alarm)."""

    type: ClassVar[str] = "panic"


# ---- cameras, storage, power ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CameraStateEvent(Event):
    """A camera went online, offline or degraded."""

    type: ClassVar[str] = "camera"
    priority: ClassVar[Priority] = Priority.LOW

    state: str  # online | offline | degraded
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class StorageEvent(Event):
    """The recordings store changed state (ok, degraded: disk full, read-only, missing)."""

    type: ClassVar[str] = "storage"
    priority: ClassVar[Priority] = Priority.LOW

    state: str  # ok | degraded
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class UpdateEvent(Event):
    """`ronda update` finished: `state` updated | rolled_back | down; detail: from, to."""

    type: ClassVar[str] = "update"
    priority: ClassVar[Priority] = Priority.LOW

    state: str
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PowerEvent(Event):
    """Under-voltage or throttling seen (Raspberry Pi), or cleared."""

    type: ClassVar[str] = "power"
    priority: ClassVar[Priority] = Priority.LOW

    state: str
    flags: list[str] = field(default_factory=list)


# ---- detection ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ObjectEvent(Event):
    """One tracked object: phase start, update or end (one track, one event id)."""

    type: ClassVar[str] = "object"

    track_id: str
    phase: str  # start | update | end
    label: str
    score: float
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in 0..1
    zones: list[str] = field(default_factory=list)
    started: float | None = None
    ended: float | None = None


@dataclass(frozen=True, kw_only=True)
class TamperEvent(Event):
    """A camera was covered, blurred or moved (phase start), or is back (phase end)."""

    type: ClassVar[str] = "tamper"

    kind: str  # covered | blurred | moved
    phase: str  # start | end


# ---- uplink ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class UploadEvent(Event):
    """A `fetch` upload: phase queued, started, progress, retrying, done or failed."""

    type: ClassVar[str] = "upload"

    job: str  # the fetch command's id
    phase: str
    start: float
    end: float
    to: str  # the upload URL without its query (a presigned URL's query is a secret)
    detail: dict[str, Any] = field(default_factory=dict)


# ---- requests and state between components (not sent as events) -----------------------


@dataclass(frozen=True, kw_only=True)
class ProtectClip(Message):
    """Ask the recorder to keep footage of `cameras` (all when empty) for an event."""

    event_id: str
    start: float
    end: float
    cameras: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Snapshot(Message):
    """The latest JPEG of a camera (retained on `<root>/cameras/<cam>/snapshot`)."""

    camera: str
    jpeg: bytes = field(repr=False)
    ts: float = field(default_factory=time.time)


@dataclass(frozen=True, kw_only=True)
class OutputChanged(Message):
    """An output (siren, light, status LED...) changed; retained on `<root>/outputs/<name>`."""

    name: str
    state: str  # on | off | <pattern name>
    cause: str  # who or what changed it
    ts: float = field(default_factory=time.time)
    until: float | None = None


@dataclass(frozen=True, kw_only=True)
class Command(Message):
    """A verified remote command. The handler must call `reply` exactly once."""

    id: str
    action: str
    args: dict[str, Any]
    key_id: str
    reply: Any = field(repr=False, compare=False)  # Callable[[bool, str, dict], None]


@dataclass(frozen=True, kw_only=True)
class ArmStateChanged(Message):
    """Armed / disarmed / schedule mode changed (detection alerts follow it)."""

    mode: str  # armed | disarmed | schedule
    cause: str
