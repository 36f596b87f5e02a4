"""Wiring of the detect area: `inference.service.DetectionLoop` on a component's thread.

For each enabled camera (when ``[detect] enabled``, and not switched off in its
``[detect.cameras.<name>]``) the loop decodes its detect stream from the camera registry
``ctx.shared.cameras`` (else, with no registry, the camera's URL). This module only joins
the loop to the rest of the node:

- tracks become `ObjectEvent`s (JPEG snapshot on start and end), tamper reports
  `TamperEvent`s, and the loop's clip requests `ProtectClip`s with the track's id;
- stream states and frame counts go to the registry (role ``detect``), and the registry
  camera's `reachable` check restarts a decoder as soon as a camera that was down answers;
- alerts follow ``ctx.shared.armed`` (the alarm area, built after this one: its absence
  is an error at start, see `firmware.wiring.shared`).

Replaces ``ctx.shared.snapshot`` with one that encodes the latest decoded frame
(falling back to the cameras area's for other cameras).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from drivers.cameras.base import StreamInput
from firmware.bus import EventBus
from firmware.component import Component
from firmware.events import ObjectEvent, ProtectClip, TamperEvent
from firmware.wiring import Context
from inference import detectors
from inference.detectors import DetectorPlugin
from inference.pipeline import TamperReport, TrackReport
from inference.service import DetectionLoop
from inference.settings import DetectSettings

log = logging.getLogger(__name__)


class DetectService(Component):
    """Runs the detection loop; its reports become bus messages."""

    name = "detect"

    def __init__(self, bus: EventBus, settings: DetectSettings,
                 sources: dict[str, StreamInput], *, registry: Any = None,
                 armed: Callable[[float], bool] | None = None,
                 make_detector: Callable[[DetectSettings], DetectorPlugin] = detectors.create,
                 drop_when_full: bool = True, stream_clock: bool = False,
                 restart_delay_s: float = 1.0) -> None:
        super().__init__()
        self.bus = bus
        self.registry = registry
        self.stall_after_s = 30.0
        self.loop = DetectionLoop(
            settings, sources, on_track=self._publish_track, on_tamper=self._publish_tamper,
            on_protect=self._protect, on_state=self._report_state,
            on_frames=self._report_frames if registry is not None else None,
            armed=armed, ready=self._ready, make_detector=make_detector,
            drop_when_full=drop_when_full, stream_clock=stream_clock,
            restart_delay_s=restart_delay_s)

    # the loop's state, for health and tests
    @property
    def settings(self) -> DetectSettings:
        return self.loop.settings

    @property
    def sources(self) -> dict[str, StreamInput]:
        return self.loop.sources

    @property
    def readers(self) -> dict:
        return self.loop.readers

    @property
    def pipelines(self) -> dict:
        return self.loop.pipelines

    # -- component -------------------------------------------------------------------
    def run(self) -> None:
        self.loop.run(self.stopping, beat=self.beat)

    def close(self) -> None:
        self.loop.close()

    def health(self) -> dict[str, Any]:
        return self.loop.health()

    def summary(self) -> str:
        h = self.health()
        return f"detect {len(self.pipelines)} cam, {h['tracks_active']} tracks"

    def snapshot(self, camera: str) -> bytes | None:
        """JPEG of the camera's latest decoded frame, None when not recent or unknown."""
        return self.loop.snapshot(camera)

    # -- adapters --------------------------------------------------------------------
    def _publish_track(self, r: TrackReport) -> None:
        self.bus.publish(ObjectEvent(
            camera=r.camera, track_id=r.track_id, phase=r.phase, label=r.label, score=r.score,
            box=tuple(round(v, 4) for v in r.box), zones=list(r.zones), started=r.started,
            ended=r.ended, snapshot=r.snapshot,
        ))

    def _protect(self, event_id: str, start: float, end: float,
                 cameras: tuple[str, ...]) -> None:
        self.bus.publish(ProtectClip(event_id=event_id, start=start, end=end, cameras=cameras))

    def _publish_tamper(self, r: TamperReport) -> None:
        self.bus.publish(TamperEvent(camera=r.camera, kind=r.kind, phase=r.phase, ts=r.ts,
                                     snapshot=r.snapshot))

    def _ready(self, name: str) -> Callable[[], bool | None] | None:
        """The registry camera's `reachable` check: after an outage the decoder restarts as
        soon as the camera answers again instead of at the end of its backoff."""
        if self.registry is None:
            return None
        try:
            return self.registry.get(name).reachable
        except KeyError:
            return None

    def _report_state(self, name: str, state: str, reason: str) -> None:
        if self.registry is not None:
            self.registry.report_state(name, "detect", state, reason)

    def _report_frames(self, name: str, count: int, expected_fps: float) -> None:
        self.registry.report_frames(name, "detect", count, expected_fps=expected_fps)


def _source(registry: Any, camera: Any) -> StreamInput | None:
    if registry is not None:
        try:
            return registry.get(camera.name).detect
        except KeyError:
            log.warning("detect: camera %s not in the camera registry", camera.name)
            return None
    url = camera.substream_url or camera.url
    return StreamInput(url=url) if url else None


def build(ctx: Context) -> list[Component]:
    settings = ctx.config.detect
    if not settings.enabled:
        return []
    # Zones, masks and overrides of unknown cameras, and a missing model, are config
    # errors (`DetectSettings.problems`, checked when the file is loaded).
    registry = ctx.shared.cameras  # None: the cameras area failed; the URLs still work
    sources = {}
    for camera in ctx.config.cameras:
        if camera.enabled and settings.for_camera(camera.name).enabled:
            source = _source(registry, camera)
            if source is not None:
                sources[camera.name] = source
    if not sources:
        return []
    armed = ctx.shared.later("armed", "detect")
    service = DetectService(ctx.bus, settings, sources, registry=registry,
                            armed=lambda now: armed()(now))
    fallback = ctx.shared.snapshot  # None: no cameras area, only detection's frames

    def snapshot(camera: str, timeout: float = 3.0) -> bytes | None:
        jpeg = service.snapshot(camera)
        if jpeg is None and fallback is not None:
            return fallback(camera, timeout)
        return jpeg

    ctx.shared.snapshot = snapshot
    return [service]
