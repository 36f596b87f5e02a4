"""Wiring of the recorder area: one `Recorder` for every enabled camera's main stream.

- camera inputs come from the camera registry (``ctx.shared["cameras"].get(name).main``),
  or, when the registry is absent, straight from the config (``StreamInput(url)``);
- what the recorder sees of each main stream goes back to the registry as role ``main``
  (``report_state``, ``report_frames``);
- each camera's ffmpeg restarts as soon as the registry camera is ``reachable`` again
  (ManagedProcess ``ready=``), its backoff capped by the camera's ``backoff_cap_s``;
- storage state changes (degraded: disk full, read-only, missing; ok again) become
  `StorageEvent`s, and so does a protected clip released by the event share
  (``reason="clip-released"``, the clip in ``detail``);
- a camera whose probe works again restarts its recording at once (``on_reachable``);
- ``ctx.shared["recorder"]`` offers ``protect(event_id, start, end, cameras)``, and
  `ProtectClip` messages on the bus call it.

The index database lives in the recordings directory (``config.recorder.path``), next to
the footage it describes: see docs/storage.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from drivers.cameras.base import StreamInput
from firmware.component import Component
from firmware.events import ProtectClip, StorageEvent
from firmware.wiring import Context
from recorder.recorder import Recorder
from recorder.settings import RecorderSettings
from recorder.store import Limits

log = logging.getLogger(__name__)


def limits_from(settings: RecorderSettings) -> Limits:
    """The store's limits from `[recorder]`."""
    return Limits(
        quota=int(settings.quota),
        camera_quota={name: int(q) for name, q in settings.camera_quota.items()},
        event_share=settings.event_share,
        max_age_s=settings.max_age_days * 86400 if settings.max_age_days else None,
        min_free=int(settings.min_free),
        keep_recent_s=settings.keep_recent_h * 3600,
        camera_max_age_s={name: days * 86400
                          for name, days in settings.camera_max_age_days.items()},
    )


class RecorderService(Component):
    """Runs the recorder's state machine on the component's thread."""

    name = "recorder"

    def __init__(self, recorder: Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def run(self) -> None:
        self.recorder.run(self.stopping, beat=self.beat)

    def health(self) -> dict[str, Any]:
        return self.recorder.health()

    def summary(self) -> str:
        return self.recorder.summary()

    def protect(self, event_id: str, start: float, end: float,
                cameras: tuple[str, ...] | list[str] = ()) -> None:
        """Keep footage of `cameras` (all when empty) from `start` to `end`."""
        self.recorder.protect(event_id, start, end, tuple(cameras))

    def release(self, event_id: str) -> None:
        """Stop protecting what `protect(event_id, ...)` kept."""
        self.recorder.release(event_id)

    def on_protect(self, msg: ProtectClip) -> None:
        try:
            self.protect(msg.event_id, msg.start, msg.end, msg.cameras)
        except Exception as exc:  # the store may be degraded: say so, do not crash the bus
            log.warning("cannot protect clip %s: %s", msg.event_id, exc)


def build(ctx: Context) -> list[Component]:
    settings = ctx.config.recorder
    enabled = [c for c in ctx.config.cameras if c.enabled]
    if not settings.enabled or not enabled:
        return []
    registry = ctx.shared.get("cameras")
    inputs: dict[str, StreamInput] = {}
    ready: dict[str, Callable[[], bool | None]] = {}
    for cam in enabled:
        if registry is not None:
            camera = registry.get(cam.name)
            inputs[cam.name] = camera.main
            ready[cam.name] = camera.reachable
        elif cam.url:
            inputs[cam.name] = StreamInput(url=cam.url)
        else:
            log.warning("camera %s: no camera registry and no url: not recorded", cam.name)

    def on_state(camera: str, state: str, reason: str) -> None:
        if registry is not None:
            registry.report_state(camera, "main", state, reason)

    def on_frames(camera: str, count: int) -> None:
        if registry is not None:
            registry.report_frames(camera, "main", count)

    def on_storage_state(state: str, reason: str, detail: dict[str, Any]) -> None:
        # ("clip-released" is already logged by the recorder, with what to change)
        if reason != "clip-released":
            log.warning("recordings store %s%s", state, f": {reason}" if reason else "")
        ctx.bus.publish(StorageEvent(state=state, reason=reason, detail=detail))

    recorder = Recorder(settings.path, inputs, segment_s=settings.segment_s,
                        limits=limits_from(settings), require_mount=settings.require_mount,
                        on_state=on_state, on_frames=on_frames,
                        on_storage_state=on_storage_state, ready=ready,
                        backoff_cap_s={c.name: c.backoff_cap_s for c in enabled},
                        audio={c.name: c.audio for c in enabled},
                        camera_segment_s=dict(settings.camera_segment_s),
                        fps={c.name: float(c.fps) for c in enabled})
    if registry is not None:  # a probe that works again restarts the camera's ffmpeg now
        registry.on_reachable(recorder.retry_now)
    service = RecorderService(recorder)
    ctx.shared["recorder"] = service
    ctx.bus.subscribe(ProtectClip, service.on_protect, name="recorder:protect")
    return [service]
