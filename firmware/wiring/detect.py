"""Wiring of the detect area: one `DetectService` runs every enabled camera's pipeline.

For each enabled camera (when ``[detect] enabled``), a `FrameReader` decodes its detect
stream (from the camera registry ``ctx.shared["cameras"]``, else the camera's URL) and
one thread runs all pipelines round-robin with one shared TFLite interpreter (an
interpreter is not thread-safe, and on a 2-core board two inference threads would only
fight over the cores that `num_threads` already uses). With the registry, the camera's
`reachable` check restarts a decoder as soon as a camera that was down answers again.

On the bus: `ObjectEvent` (start/update/end of alerting tracks, JPEG snapshot on start
and end), `TamperEvent`, and per alerting track two `ProtectClip`s with the track's id:
at its start [start - pre_s, now + post_s], so the beginning of a long event cannot age
out before it ends, and at its end [start - pre_s, end + post_s] (the recorder widens the
same event's clip). A camera whose stream gives no frame for `lost_after_s` has its
tracks ended (and their `end` sent) without waiting for frames to return.

Replaces ``ctx.shared["snapshot"]`` with one that encodes the latest decoded frame
(falling back to the cameras area's for other cameras).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.cameras.base import StreamInput
from firmware.bus import EventBus
from firmware.component import Component
from firmware.events import ObjectEvent, ProtectClip, TamperEvent
from firmware.wiring import Context
from inference.detector import Detector
from inference.frames import FrameReader
from inference.pipeline import (
    CameraPipeline,
    TamperReport,
    TrackReport,
    single_threaded_opencv,
)
from inference.settings import DetectSettings

log = logging.getLogger(__name__)


class DetectService(Component):
    """Decode, detect, track and report for a set of cameras."""

    name = "detect"

    def __init__(self, bus: EventBus, settings: DetectSettings,
                 sources: dict[str, StreamInput], *, registry: Any = None,
                 armed: Callable[[float], bool] | None = None,
                 drop_when_full: bool = True, stream_clock: bool = False,
                 restart_delay_s: float = 1.0) -> None:
        super().__init__()
        self.bus = bus
        self.settings = settings
        self.sources = sources
        self.registry = registry
        self._armed = armed
        self.drop_when_full = drop_when_full
        self.stream_clock = stream_clock  # files in tests and benches: time = frame / fps
        self.restart_delay_s = restart_delay_s
        self.stall_after_s = 30.0
        self.detector: Detector | None = None
        self.readers: dict[str, FrameReader] = {}
        self.pipelines: dict[str, CameraPipeline] = {}
        self._wake = threading.Event()
        self._reported: dict[str, int] = {}
        self._last_frame: dict[str, float] = {}  # monotonic time of each camera's last frame
        self.frame_errors: dict[str, int] = {}  # frames whose processing raised, per camera
        self.last_frame_error: dict[str, str] = {}
        self._error_logged: dict[str, float] = {}  # monotonic time of the last error logged
        self.error_log_interval_s = 60.0
        self.error_text = ""

    # -- component -------------------------------------------------------------------
    def run(self) -> None:
        s = self.settings
        if s.model is None:
            self.error_text = "no model configured ([detect] model)"
            self._report_all("offline", self.error_text)
            raise RuntimeError(self.error_text)
        single_threaded_opencv()
        try:
            self.detector = Detector(s.model, labels=s.labels, model_type=s.model_type,
                                     num_threads=s.num_threads, delegate=s.delegate,
                                     device=s.delegate_device, min_score=min(0.4, s.min_score))
        except Exception as exc:  # a missing file, a model of unknown layout, no EdgeTPU
            self.error_text = f"cannot load model {s.model}: {exc}"
            self._report_all("offline", self.error_text)
            raise
        for name, source in self.sources.items():
            self.pipelines[name] = CameraPipeline(
                name, s, self.detector, s.width, s.height,
                on_track=self._publish_track, on_tamper=self._publish_tamper,
                armed=self._is_armed)
            reader = FrameReader(name, source, s.width, s.height, fps=s.fps,
                                 hwaccel=s.hwaccel, drop_when_full=self.drop_when_full,
                                 stream_clock=self.stream_clock,
                                 on_state=self._state_reporter(name), on_frame=self._wake.set,
                                 restart_delay_s=self.restart_delay_s, ready=self._ready(name))
            self.readers[name] = reader
            reader.start()
        last_report = time.monotonic()
        while not self.stopping.is_set():
            worked = False
            for name, reader in self.readers.items():
                frame = reader.pool.get()
                if frame is None:
                    self._check_idle(name)
                    continue
                self._last_frame[name] = time.monotonic()
                try:
                    self.pipelines[name].process(frame.yuv, frame.ts, frame.mono)
                except Exception as exc:  # one bad frame must not crash-loop every camera
                    self._frame_failed(name, exc)
                finally:
                    # the frame stays with the pipeline for snapshots; the pool gets the
                    # pipeline's previous buffer back (a swap, no copy)
                    frame.yuv = self.pipelines[name].adopt(frame.yuv)
                    reader.pool.release(frame)
                worked = True
            self.beat()
            if time.monotonic() - last_report >= 1.0:
                self._report_frames()
                last_report = time.monotonic()
            if not worked:
                self._wake.wait(0.5)
                self._wake.clear()

    def close(self) -> None:
        for reader in self.readers.values():
            reader.stop()
        self._report_frames()
        for pipeline in self.pipelines.values():
            pipeline.finish()
        self.readers.clear()
        self.pipelines.clear()
        self._last_frame.clear()
        self._reported.clear()  # the next run's readers count from zero

    def health(self) -> dict[str, Any]:
        cams = {name: {**p.stats.as_dict(),
                       "tracks_active": len(p.tracker.tracks),
                       "frames_dropped": self.readers[name].pool.dropped
                       if name in self.readers else 0,
                       "decoder": {**self.readers[name].process.health(),
                                   "hwaccel": self.readers[name].decoder}
                       if name in self.readers else {},
                       "tamper": [k for k, v in p.tamper.active.items() if v]
                       if p.tamper else [],
                       "frame_errors": self.frame_errors.get(name, 0),
                       "last_frame_error": self.last_frame_error.get(name, "")}
                for name, p in list(self.pipelines.items())}
        inference = sorted(ms for p in self.pipelines.values() for ms in p.stats.inference_ms)
        return {
            "model": str(self.settings.model) if self.settings.model else None,
            "model_type": self.detector.model_type if self.detector else None,
            "inference_ms_p50": round(inference[len(inference) // 2], 2) if inference else None,
            "frames_in": sum(c["frames_in"] for c in cams.values()),
            "detector_runs": sum(c["detector_runs"] for c in cams.values()),
            "skipped_by_motion": sum(c["skipped_by_motion"] for c in cams.values()),
            "tracks_active": sum(c["tracks_active"] for c in cams.values()),
            "tracks_total": sum(c["tracks_total"] for c in cams.values()),
            "frame_errors": sum(c["frame_errors"] for c in cams.values()),
            "error": self.error_text,
            "cameras": cams,
        }

    def summary(self) -> str:
        h = self.health()
        return f"detect {len(self.pipelines)} cam, {h['tracks_active']} tracks"

    # -- snapshots -------------------------------------------------------------------
    def snapshot(self, camera: str) -> bytes | None:
        """JPEG of the camera's latest decoded frame, None when not recent or unknown."""
        pipeline = self.pipelines.get(camera)
        return pipeline.snapshot() if pipeline is not None else None

    def _frame_failed(self, name: str, exc: Exception) -> None:
        """Count a frame whose processing raised, log it (once a minute per camera, with
        the traceback), and go on with the next frame."""
        count = self.frame_errors[name] = self.frame_errors.get(name, 0) + 1
        self.last_frame_error[name] = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        last = self._error_logged.get(name)
        if last is None or now - last >= self.error_log_interval_s:
            self._error_logged[name] = now
            log.error("detect: camera %s: frame processing failed (%d so far): %s",
                      name, count, self.last_frame_error[name], exc_info=exc)

    def _check_idle(self, name: str) -> None:
        """End the tracks of a camera whose stream has stopped (cut, smashed, decoder down):
        its alert must end, and its clip be protected, without waiting for frames."""
        pipeline = self.pipelines[name]
        last = self._last_frame.get(name)
        if last is None or not pipeline.tracker.tracks:
            return
        idle = time.monotonic() - last
        if idle >= self.settings.lost_after_s:
            pipeline.idle(idle)

    # -- adapters --------------------------------------------------------------------
    def _is_armed(self, now: float) -> bool:
        if self._armed is None:
            return True
        return bool(self._armed(now))

    def _publish_track(self, r: TrackReport) -> None:
        self.bus.publish(ObjectEvent(
            camera=r.camera, track_id=r.track_id, phase=r.phase, label=r.label, score=r.score,
            box=tuple(round(v, 4) for v in r.box), zones=list(r.zones), started=r.started,
            ended=r.ended, snapshot=r.snapshot,
        ))
        if r.phase in ("start", "end"):  # same event id: the recorder widens the clip
            if r.phase == "end" and r.ended is not None:
                end = r.ended
            else:
                end = r.ts if r.ts is not None else time.time()
            self.bus.publish(ProtectClip(event_id=r.track_id,
                                         start=r.started - self.settings.pre_s,
                                         end=end + self.settings.post_s, cameras=(r.camera,)))

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

    def _state_reporter(self, name: str) -> Callable[[str, str], None]:
        def report(state: str, reason: str) -> None:
            if self.registry is not None:
                self.registry.report_state(name, "detect", state, reason)
        return report

    def _report_all(self, state: str, reason: str) -> None:
        for name in self.sources:
            self._state_reporter(name)(state, reason)

    def _report_frames(self) -> None:
        if self.registry is None:
            return
        for name, reader in self.readers.items():
            total = reader.frames
            delta = total - self._reported.get(name, 0)
            self._reported[name] = total
            if delta:  # judged against the rate we decode at, not the camera's
                self.registry.report_frames(name, "detect", delta,
                                            expected_fps=self.settings.fps)


def _source(ctx: Context, camera: Any) -> StreamInput | None:
    registry = ctx.shared.get("cameras")
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
    known = {c.name for c in ctx.config.cameras}
    for item in [*settings.zones, *settings.masks]:
        if item.camera not in known:
            log.warning("detect: a zone or mask names camera %r, which is not configured "
                        "(cameras: %s)", item.camera, ", ".join(sorted(known)) or "none")
    sources = {}
    for camera in ctx.config.cameras:
        if camera.enabled:
            source = _source(ctx, camera)
            if source is not None:
                sources[camera.name] = source
    if not sources:
        return []
    service = DetectService(ctx.bus, settings, sources, registry=ctx.shared.get("cameras"),
                            armed=lambda now: _armed_now(ctx, now))
    fallback = ctx.shared.get("snapshot")

    def snapshot(camera: str, timeout: float = 3.0) -> bytes | None:
        jpeg = service.snapshot(camera)
        if jpeg is None and fallback is not None:
            return fallback(camera, timeout)
        return jpeg

    ctx.shared["snapshot"] = snapshot
    return [service]


def _armed_now(ctx: Context, now: float) -> bool:
    """The alarm area's schedule when it is there (built after us), else always armed."""
    armed = ctx.shared.get("armed")
    return True if armed is None else bool(armed(now))
