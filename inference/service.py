"""The detection loop: every camera's pipeline on one thread, with one shared detector.

For each camera a `FrameReader` decodes its detect stream, and `DetectionLoop.run` feeds
the frames to the cameras' `CameraPipeline`s round-robin with one detector (a TFLite
interpreter is not thread-safe, and on a 2-core board two inference threads would only
fight over the cores that `num_threads` already uses). The loop also:

- ends the tracks of a camera whose stream gives no frame for `lost_after_s` (cut,
  smashed, decoder down) without waiting for frames to return (`idle`);
- counts a frame whose processing raised and goes on with the next one, logging it at
  most once a minute per camera with its traceback;
- asks for footage to be kept for each alerting track twice, with the track's id: at its
  start [start - pre_s, now + post_s], so the beginning of a long event cannot age out
  before it ends, and at its end [start - pre_s, end + post_s] (the recorder widens the
  same event's clip).

It knows nothing of the daemon: what it reports goes to callbacks (``on_track``,
``on_tamper``, ``on_protect``, ``on_state`` and ``on_frames`` per camera), whether alerts
are armed comes from ``armed(now)``, and ``ready(camera)`` may give a camera's cheap
reachability check, which restarts its decoder as soon as a camera that was down answers
again. Each camera runs with ``settings.for_camera(name)`` (its own thresholds, labels,
zones and masks). ``firmware/wiring/detect.py`` turns the callbacks into bus messages.

Example::

    loop = DetectionLoop(settings, {"gate": StreamInput("rtsp://...")}, on_track=print)
    loop.run(stop_event, beat=lambda: None)   # returns when stop_event is set
    loop.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from drivers.cameras.base import StreamInput
from inference import detectors
from inference.detectors import DetectorPlugin
from inference.frames import FrameReader
from inference.pipeline import CameraPipeline, TamperReport, TrackReport, single_threaded_opencv
from inference.settings import DetectSettings

log = logging.getLogger(__name__)

ERROR_LOG_INTERVAL_S = 60.0  # a camera's frame errors are logged at most this often


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


class DetectionLoop:
    """Decode, detect, track and report for a set of cameras. One instance may be run
    several times (`run` then `close`, as a supervisor restarts a component)."""

    def __init__(self, settings: DetectSettings, sources: dict[str, StreamInput], *,
                 on_track: Callable[[TrackReport], None] = _ignore,
                 on_tamper: Callable[[TamperReport], None] = _ignore,
                 on_protect: Callable[[str, float, float, tuple[str, ...]], None] = _ignore,
                 on_state: Callable[[str, str, str], None] = _ignore,
                 on_frames: Callable[[str, int, float], None] | None = None,
                 armed: Callable[[float], bool] | None = None,
                 ready: Callable[[str], Callable[[], bool | None] | None] | None = None,
                 make_detector: Callable[[DetectSettings], DetectorPlugin] = detectors.create,
                 drop_when_full: bool = True, stream_clock: bool = False,
                 restart_delay_s: float = 1.0) -> None:
        self.settings = settings
        self.sources = sources
        self.camera_settings = {name: settings.for_camera(name) for name in sources}
        self.on_track, self.on_tamper, self.on_protect = on_track, on_tamper, on_protect
        self.on_state, self.on_frames = on_state, on_frames
        self._armed = armed
        self._ready_check = ready
        self.make_detector = make_detector
        self.drop_when_full = drop_when_full
        self.stream_clock = stream_clock  # files in tests and benches: time = frame / fps
        self.restart_delay_s = restart_delay_s
        self.detector: DetectorPlugin | None = None
        self.readers: dict[str, FrameReader] = {}
        self.pipelines: dict[str, CameraPipeline] = {}
        self._wake = threading.Event()
        self._reported: dict[str, int] = {}
        self._last_frame: dict[str, float] = {}  # monotonic time of each camera's last frame
        self.frame_errors: dict[str, int] = {}  # frames whose processing raised, per camera
        self.last_frame_error: dict[str, str] = {}
        self._error_logged: dict[str, float] = {}  # monotonic time of the last error logged
        self.error_log_interval_s = ERROR_LOG_INTERVAL_S
        self.error_text = ""

    # -- the loop ------------------------------------------------------------------------
    def run(self, stop: threading.Event, beat: Callable[[], None]) -> None:
        """Start the decoders and process frames until `stop` is set; `beat()` after each
        round. Raises when the detector cannot be made (its cameras are reported offline)."""
        s = self.settings
        if s.model is None:
            self.error_text = "no model configured ([detect] model)"
            self._report_all("offline", self.error_text)
            raise RuntimeError(self.error_text)
        single_threaded_opencv()
        try:
            self.detector = self.make_detector(s)
        except Exception as exc:  # a missing file, a model of unknown layout, no EdgeTPU
            self.error_text = f"cannot load model {s.model}: {exc}"
            self._report_all("offline", self.error_text)
            raise
        for name, source in self.sources.items():
            own = self.camera_settings[name]
            self.pipelines[name] = CameraPipeline(
                name, own, self.detector, s.width, s.height,
                on_track=self.publish_track, on_tamper=self.on_tamper, armed=self._is_armed)
            reader = FrameReader(name, source, s.width, s.height, fps=s.fps,
                                 hwaccel=s.hwaccel, drop_when_full=self.drop_when_full,
                                 stream_clock=self.stream_clock,
                                 on_state=self._state_reporter(name), on_frame=self._wake.set,
                                 restart_delay_s=self.restart_delay_s, ready=self._ready(name))
            self.readers[name] = reader
            reader.start()
        last_report = time.monotonic()
        while not stop.is_set():
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
            beat()
            if time.monotonic() - last_report >= 1.0:
                self._report_frames()
                last_report = time.monotonic()
            if not worked:
                self._wake.wait(0.5)
                self._wake.clear()

    def close(self) -> None:
        """Stop the decoders and end every open track (their `end` is reported)."""
        for reader in self.readers.values():
            reader.stop()
        self._report_frames()
        for pipeline in self.pipelines.values():
            pipeline.finish()
        self.readers.clear()
        self.pipelines.clear()
        self._last_frame.clear()
        self._reported.clear()  # the next run's readers count from zero

    # -- figures and snapshots -----------------------------------------------------------
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

    def snapshot(self, camera: str) -> bytes | None:
        """JPEG of the camera's latest decoded frame, None when not recent or unknown."""
        pipeline = self.pipelines.get(camera)
        return pipeline.snapshot() if pipeline is not None else None

    # -- reports -------------------------------------------------------------------------
    def publish_track(self, r: TrackReport) -> None:
        """Report an alerting track; at its start and end also ask for its clip."""
        self.on_track(r)
        if r.phase in ("start", "end"):  # same event id: the recorder widens the clip
            if r.phase == "end" and r.ended is not None:
                end = r.ended
            else:
                end = r.ts if r.ts is not None else time.time()
            own = self.camera_settings.get(r.camera, self.settings)
            self.on_protect(r.track_id, r.started - own.pre_s, end + own.post_s, (r.camera,))

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
        if idle >= self.camera_settings.get(name, self.settings).lost_after_s:
            pipeline.idle(idle)

    def _is_armed(self, now: float) -> bool:
        if self._armed is None:
            return True
        return bool(self._armed(now))

    def _ready(self, name: str) -> Callable[[], bool | None] | None:
        return self._ready_check(name) if self._ready_check is not None else None

    def _state_reporter(self, name: str) -> Callable[[str, str], None]:
        def report(state: str, reason: str) -> None:
            self.on_state(name, state, reason)
        return report

    def _report_all(self, state: str, reason: str) -> None:
        for name in self.sources:
            self.on_state(name, state, reason)

    def _report_frames(self) -> None:
        if self.on_frames is None:
            return
        for name, reader in self.readers.items():
            total = reader.frames
            delta = total - self._reported.get(name, 0)
            self._reported[name] = total
            if delta:  # judged against the rate we decode at, not the camera's
                self.on_frames(name, delta, self.settings.fps)
