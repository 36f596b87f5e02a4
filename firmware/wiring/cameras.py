"""Wiring of the cameras area: the camera registry, producers, probes and snapshots.

The services themselves live in `drivers/cameras/service.py`; this module builds them and
connects their callbacks to the bus.

Offers to the areas built after it:

- ``ctx.shared["cameras"]``: the `CameraRegistry` (``get(name).main/.detect``,
  ``report_state``, ``report_frames``);
- ``ctx.shared["snapshot"]``: ``snapshot(camera, timeout=3.0) -> bytes | None``.

Handles the ``snapshot`` remote command and turns camera state changes into
`CameraStateEvent`s on the bus.
"""

from __future__ import annotations

import logging
from typing import Any

from drivers.cameras.factory import make_camera
from drivers.cameras.registry import CameraRegistry
from drivers.cameras.service import CameraService, SnapshotService
from firmware.component import Component
from firmware.config import read_secret
from firmware.events import CameraStateEvent, Command, Snapshot
from firmware.wiring import Context

log = logging.getLogger(__name__)


class CamerasComponent(Component):
    """The supervised thread of the cameras area: runs `CameraService`."""

    name = "cameras"

    def __init__(self, service: CameraService) -> None:
        super().__init__()
        self.service = service

    def run(self) -> None:
        self.service.run(self.stopping, self.beat)

    def close(self) -> None:
        self.service.close()

    def health(self) -> dict[str, Any]:
        return self.service.health()

    def summary(self) -> str:
        return self.service.summary()


def build(ctx: Context) -> list[Component]:
    enabled = [c for c in ctx.config.cameras if c.enabled]
    cameras = [make_camera(c, read_secret(c.password_file)) for c in enabled]

    def on_change(camera: str, state: str, reason: str) -> None:
        log.info("camera %s: %s%s", camera, state, f" ({reason})" if reason else "")
        ctx.bus.publish(CameraStateEvent(camera=camera, state=state, reason=reason))

    # An IP camera sends at the rate set in its own web page: unless `fps` is set in our config,
    # the probed rate is the one to hold it to (see CameraService._probe_one).
    expected = {c.name: float(c.fps) for c in enabled
                if c.kind != "rtsp" or "fps" in c.model_fields_set}
    registry = CameraRegistry(cameras, on_change, expected_fps=expected)
    snapshots = SnapshotService(
        registry,
        on_snapshot=lambda cam, jpeg, ts: ctx.bus.publish(Snapshot(camera=cam, jpeg=jpeg, ts=ts)),
        current=lambda: ctx.shared.snapshot)
    ctx.shared["cameras"] = registry
    ctx.shared["snapshot"] = snapshots
    ctx.bus.subscribe(Command, snapshots.on_command, name="cameras:snapshot")
    return [CamerasComponent(CameraService(
        registry,
        probe_timeout_s={c.name: c.timeout_s for c in enabled},
        backoff_cap_s={c.name: c.backoff_cap_s for c in enabled},
        audio={c.name: c.audio for c in enabled}))]
