"""One camera's detection pipeline: motion -> crops -> detector -> tracks -> reports.

Per frame (I420 at the detect size):

1. motion regions on the grey plane (`inference.motion`), tamper checks (`inference.tamper`);
2. where there is motion, and around tracks due for a re-check (`recheck_s`, so a person
   standing still stays tracked), square crops at least the model's input size are cut
   from the frame: the model sees objects near its native scale instead of a whole frame
   squeezed into 224 px, and runs only where something changed;
3. detections go to the tracker; a track *alerts* once it has a best score above
   `min_score`, a box above `min_area`, has entered a zone (when the camera has zones),
   was seen twice, and alerts are armed. Alerting tracks are reported: start (with a
   snapshot), updates (rate-limited), end (with the best snapshot).

Two clocks: `now` (wall time) stamps reports (track start/end, tamper) and asks whether
alerts are armed; `mono` (monotonic) measures every duration (lost_after_s, recheck_s,
update_interval_s, tamper persistence). A Pi without an RTC boots with a stale wall clock
and NTP steps it, often backwards, once the network is up: on the wall clock tracks would
not end and re-checks and tamper checks would stop for as long as the step.

No frame: no work. No motion and no track due: the detector is not run. A stream that
stops (camera cut, smashed, decoder down) must still end its tracks: the caller says how
long it has had no frame with `idle(seconds)`, and tracks unseen for `lost_after_s` end.

Example::

    pipe = CameraPipeline("cam1", settings, detector, 640, 360, on_track=print)
    pipe.process(frame.yuv, time.time(), time.monotonic())
    frame.yuv = pipe.adopt(frame.yuv)   # latest frame for snapshots: a swap, no copy
"""

from __future__ import annotations

import collections
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.detector import Box, Detection, nms
from inference.detectors import DetectorPlugin
from inference.motion import MotionDetector, merge_boxes
from inference.settings import DetectSettings
from inference.tamper import TamperDetector
from inference.tracker import Track, Tracker
from inference.zones import Polygon, Zone

MIN_HITS = 2  # detections before a track may alert: one odd frame is not a person


@dataclass(frozen=True)
class TrackReport:
    """An alerting track's start, update or end."""

    camera: str
    phase: str  # start | update | end
    track_id: str
    label: str
    score: float  # best score so far
    box: Box  # latest box, x0, y0, x1, y1 in 0..1
    zones: list[str]
    started: float
    ended: float | None = None
    snapshot: bytes | None = field(default=None, repr=False)
    ts: float | None = None  # when this report was made (the pipeline's clock)


@dataclass(frozen=True)
class TamperReport:
    """A tamper condition started or ended on a camera."""

    camera: str
    kind: str  # covered | blurred | moved
    phase: str  # start | end
    ts: float
    snapshot: bytes | None = field(default=None, repr=False)


@dataclass
class PipelineStats:
    """Counters of one pipeline (health figures)."""

    frames: int = 0
    motion_frames: int = 0
    detector_runs: int = 0
    skipped_by_motion: int = 0  # frames where the detector did not run
    tracks_total: int = 0
    alerts: int = 0
    inference_ms: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=200))
    frame_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=200))

    def as_dict(self) -> dict:
        p50 = lambda d: round(statistics.median(d), 2) if d else None  # noqa: E731
        return {"frames_in": self.frames, "motion_frames": self.motion_frames,
                "detector_runs": self.detector_runs, "skipped_by_motion": self.skipped_by_motion,
                "tracks_total": self.tracks_total, "alerts": self.alerts,
                "inference_ms_p50": p50(self.inference_ms), "frame_ms_p50": p50(self.frame_ms)}


def single_threaded_opencv() -> None:
    """Make OpenCV run each call on the calling thread (process-wide).

    Its worker pool pays off on large images only; on 224 px crops and a 160 px motion
    picture it added 5-10 % CPU per frame (measured in bench/detect.py), and a node's two
    cores are better spent on ffmpeg and the model.
    """
    cv2.setNumThreads(1)


def encode_jpeg(rgb: np.ndarray, box: Box | None = None, caption: str = "",
                quality: int = 85) -> bytes:
    """JPEG of an RGB frame, with `box` (0..1) drawn and captioned when given."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if box is not None:
        h, w = bgr.shape[:2]
        p0 = (int(box[0] * w), int(box[1] * h))
        p1 = (int(box[2] * w) - 1, int(box[3] * h) - 1)
        cv2.rectangle(bgr, p0, p1, (0, 0, 255), 2)
        if caption:
            cv2.putText(bgr, caption, (p0[0] + 3, max(p0[1] + 14, 14)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1, cv2.LINE_AA)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


class CameraPipeline:
    """Motion-gated detection, tracking, zones and tamper for one camera."""

    def __init__(self, camera: str, settings: DetectSettings, detector: DetectorPlugin,
                 width: int, height: int, *,
                 on_track: Callable[[TrackReport], None] = lambda r: None,
                 on_tamper: Callable[[TamperReport], None] = lambda r: None,
                 armed: Callable[[float], bool] = lambda now: True) -> None:
        self.camera = camera
        self.settings = settings
        self.detector = detector
        self.width, self.height = width, height
        self.on_track, self.on_tamper, self.armed = on_track, on_tamper, armed
        masks = [m.points for m in settings.masks if m.camera == camera]
        m = settings.motion
        self.motion = MotionDetector(width, height, width=m.width, threshold=m.threshold,
                                     min_area=m.min_area, alpha=m.alpha,
                                     global_change=m.global_change, masks=masks)
        t = settings.tamper
        self.tamper = TamperDetector(
            persist_s=t.persist_s, check_fps=t.check_fps, covered_contrast=t.covered_contrast,
            blur_ratio=t.blur_ratio, moved_match=t.moved_match, learn_s=t.learn_s,
        ) if t.enabled else None
        self.masks = [Polygon(p) for p in masks]
        self.zones = [Zone(z.name, z.points, z.objects) for z in settings.zones
                      if z.camera == camera]
        self.tracker = Tracker(lost_after_s=settings.lost_after_s)
        self.floor = min(0.4, settings.min_score)
        detector.min_score = min(detector.min_score, self.floor)
        self.stats = PipelineStats()
        self._rgb = np.empty((height, width, 3), np.uint8)
        self._scratch: dict[str, np.ndarray] = {}  # flat buffers grown to the largest use
        self._latest = np.empty((height * 3 // 2, width), np.uint8)  # swapped by adopt()
        self._latest_at = -1e18  # time.monotonic() when the latest frame was adopted
        self._latest_lock = threading.Lock()
        self._last_now: float | None = None  # the clocks of the last frame processed
        self._last_mono = 0.0

    # -- per frame -------------------------------------------------------------------
    def process(self, yuv: np.ndarray, now: float | None = None,
                mono: float | None = None) -> None:
        """Run one I420 frame through motion, tamper, detection and tracking.

        `now` is wall time (default `time.time()`), `mono` the duration clock (default
        `time.monotonic()` when `now` is not given either, else `now`: a caller that gives
        stream time, as tests and file replays do, has one clock for both)."""
        if mono is None:
            mono = time.monotonic() if now is None else now
        now = time.time() if now is None else now
        started = time.perf_counter()
        self._last_now, self._last_mono = now, mono
        grey = yuv[: self.height]
        regions = self.motion.update(grey)
        self.stats.frames += 1
        if regions:
            self.stats.motion_frames += 1
        if self.tamper is not None:
            for kind, phase in self.tamper.update(grey, mono):
                self._report_tamper(yuv, kind, phase, now)
        crops = self._plan_crops(regions, mono)
        detections: list[Detection] = []
        if crops:
            for crop in crops:
                detections += self._detect_in(yuv, crop)
            detections = self._filter(detections)
            for track in self.tracker.tracks:  # everything re-checked counts as checked
                if any(_inside(track.box, self._norm(c)) for c in crops):
                    track.last_checked = mono
        else:
            self.stats.skipped_by_motion += 1
        # tracks keep a copy of the I420 frame they scored best in (half the bytes of RGB;
        # converted only when a snapshot is encoded)
        new, seen, ended = self.tracker.update(detections, now, yuv if crops else None, mono)
        self.stats.tracks_total = self.tracker.total
        for track in new + seen:
            self._note_zones(track)
            self._consider(track, now, mono)
        for track in ended:
            self._end(track, now)
        self.stats.frame_ms.append((time.perf_counter() - started) * 1000)

    def adopt(self, yuv: np.ndarray) -> np.ndarray:
        """Keep `yuv` (a frame just processed) as the latest frame for `snapshot`, without
        copying it, and give back the buffer kept until now: the caller uses that one in
        place of `yuv` (the service hands it to the frame pool). A swap instead of a
        345 KB copy per frame; snapshots (rare) convert under the lock, so the buffer
        given back is never being read. A caller that does not own `yuv` passes a copy."""
        if yuv.shape != self._latest.shape or yuv.dtype != np.uint8:
            raise ValueError(f"frame of shape {yuv.shape}, expected {self._latest.shape}")
        with self._latest_lock:
            old, self._latest = self._latest, yuv
            self._latest_at = time.monotonic()
        return old

    def idle(self, idle_s: float) -> None:
        """The stream has given no frame for `idle_s` seconds since the last one: tracks
        unseen for `lost_after_s` by then end (and alerting ones report `end`), as they
        would have on a frame. Without this a camera cut mid-alert leaves its alert open
        until frames return, maybe never."""
        if not self.tracker.tracks or self._last_now is None:
            return
        now = self._last_now + idle_s
        _, _, ended = self.tracker.update([], now, None, self._last_mono + idle_s)
        for track in ended:
            self._end(track, now)

    def finish(self, now: float | None = None) -> None:
        """End every track (the stream stopped)."""
        now = time.time() if now is None else now
        for track in self.tracker.end_all():
            self._end(track, now)

    def snapshot(self, max_age_s: float = 5.0) -> bytes | None:
        """JPEG of the latest adopted frame, None when there is none recent."""
        with self._latest_lock:
            if time.monotonic() - self._latest_at > max_age_s:
                return None
            rgb = cv2.cvtColor(self._latest, cv2.COLOR_YUV2RGB_I420)
        return encode_jpeg(rgb)

    # -- crops -----------------------------------------------------------------------
    def _square(self, box: Box, margin: float = 1.2) -> tuple[int, int, int]:
        """A square crop (x0, y0, side in pixels) around `box`, at least model-sized."""
        W, H = self.width, self.height
        bw, bh = (box[2] - box[0]) * W, (box[3] - box[1]) * H
        side = int(max(bw * margin, bh * margin, self.detector.input_size))
        side = min(side, max(W, H))
        cx, cy = (box[0] + box[2]) / 2 * W, (box[1] + box[3]) / 2 * H
        x0 = int(min(max(cx - side / 2, 0), W - side)) if side <= W else (W - side) // 2
        y0 = int(min(max(cy - side / 2, 0), H - side)) if side <= H else (H - side) // 2
        return x0, y0, side

    def _norm(self, crop: tuple[int, int, int]) -> Box:
        x0, y0, side = crop
        return (x0 / self.width, y0 / self.height,
                (x0 + side) / self.width, (y0 + side) / self.height)

    def _plan_crops(self, regions: list[Box], mono: float) -> list[tuple[int, int, int]]:
        # Motion often covers only part of a person (edges, the limbs that move) or leaves
        # a ghost beside them; a crop that cuts through a track is grown to hold the whole
        # of the track's predicted box, so the model never sees half a person.
        expected = [_pad(t.predicted(mono), 0.1) for t in self.tracker.tracks]
        regions = list(regions)
        for track in self.tracker.tracks:
            due = mono - track.last_checked >= self.settings.recheck_s
            if due and not any(_inside(track.box, r) for r in regions):
                regions.append(_pad(track.box, 0.2))
        crops = [self._square(r) for r in merge_boxes(regions)]
        for _ in range(3):
            grown = []
            for crop in crops:
                area = self._norm(crop)
                for box in expected:
                    if _overlap(area, box) and not _contains(area, box):
                        area = _union(area, box)
                grown.append(self._square(area, margin=1.0))
            if grown == crops:
                break
            crops = self._merge(grown)
        if len(crops) > self.settings.max_crops:
            return [self._square((0.0, 0.0, 1.0, 1.0), margin=1.0)]
        return crops

    def _merge(self, crops: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
        """Replace two crops by one when one square covering both is not much larger."""
        crops = list(dict.fromkeys(crops))
        changed = True
        while changed and len(crops) > 1:
            changed = False
            for i in range(len(crops)):
                for j in range(i + 1, len(crops)):
                    a, b = self._norm(crops[i]), self._norm(crops[j])
                    merged = self._square(_union(a, b), margin=1.0)
                    if merged[2] <= 1.5 * max(crops[i][2], crops[j][2]):
                        crops = [c for k, c in enumerate(crops) if k not in (i, j)] + [merged]
                        changed = True
                        break
                if changed:
                    break
        return crops

    def _crop_rgb(self, yuv: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
        """RGB of a square inside the frame, converting only that square from I420."""
        W, H = self.width, self.height
        x0, y0, side = x0 & ~1, y0 & ~1, side & ~3
        # the chroma planes by byte offset: each is H/2 x W/2 bytes, which fills whole rows
        # of the (H * 3/2, W) frame only when H is a multiple of 4 (not for 362, 358, 406)
        flat = yuv.reshape(-1)
        size = W * H
        u = flat[size:size + size // 4].reshape(H // 2, W // 2)
        v = flat[size + size // 4:size * 3 // 2].reshape(H // 2, W // 2)
        half = side // 2
        buf = self._buffer("crop_i420", (side * 3 // 2, side))
        buf[:side] = yuv[y0:y0 + side, x0:x0 + side]
        quarter = side // 4 if side % 4 == 0 else None
        if quarter is not None:  # chroma planes as the I420 layout wants them
            buf[side:side + quarter] = u[y0 // 2:y0 // 2 + half, x0 // 2:x0 // 2 + half] \
                .reshape(quarter, side)
            buf[side + quarter:] = v[y0 // 2:y0 // 2 + half, x0 // 2:x0 // 2 + half] \
                .reshape(quarter, side)
            return cv2.cvtColor(buf, cv2.COLOR_YUV2RGB_I420,
                                dst=self._buffer("crop_rgb", (side, side, 3)))
        rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420, dst=self._rgb)
        return rgb[y0:y0 + side, x0:x0 + side]

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A contiguous uint8 array of `shape`, a view of one flat buffer per `name` that
        grows to the largest size asked: crop sides vary frame to frame, and a buffer per
        side would grow without bound while a new array per call costs page faults."""
        n = int(np.prod(shape))
        flat = self._scratch.get(name)
        if flat is None or flat.size < n:
            flat = self._scratch[name] = np.empty(n, np.uint8)
        return flat[:n].reshape(shape)

    def _detect_in(self, yuv: np.ndarray, crop: tuple[int, int, int]) -> list[Detection]:
        x0, y0, side = crop
        if x0 >= 0 and y0 >= 0 and x0 + side <= self.width and y0 + side <= self.height:
            image = self._crop_rgb(yuv, x0, y0, side)
            side = side & ~3
            x0, y0 = x0 & ~1, y0 & ~1
        else:  # wider than the frame is high: letterbox
            rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420, dst=self._rgb)
            image = self._buffer("letterbox", (side, side, 3))
            sx0, sy0 = max(x0, 0), max(y0, 0)
            sx1, sy1 = min(x0 + side, self.width), min(y0 + side, self.height)
            top, bottom, left, right = sy0 - y0, sy1 - y0, sx0 - x0, sx1 - x0
            image[:top] = 0  # the reused buffer: black bars written, not a new zeroed array
            image[bottom:] = 0
            image[top:bottom, :left] = 0
            image[top:bottom, right:] = 0
            image[top:bottom, left:right] = rgb[sy0:sy1, sx0:sx1]
        t0 = time.perf_counter()
        found = self.detector.detect(image)
        self.stats.inference_ms.append((time.perf_counter() - t0) * 1000)
        self.stats.detector_runs += 1
        out = []
        for d in found:
            box = (max(0.0, (x0 + d.box[0] * side) / self.width),
                   max(0.0, (y0 + d.box[1] * side) / self.height),
                   min(1.0, (x0 + d.box[2] * side) / self.width),
                   min(1.0, (y0 + d.box[3] * side) / self.height))
            out.append(Detection(d.label, d.score, box))
        return out

    def _filter(self, detections: list[Detection]) -> list[Detection]:
        wanted = set(self.settings.objects)
        dets = [d for d in detections
                if d.label in wanted and not any(m.contains_box(d.box) for m in self.masks)]
        if len(dets) < 2:
            return dets
        boxes = np.array([d.box for d in dets], np.float32)
        scores = np.array([d.score for d in dets], np.float32)
        kept = [dets[i] for i in nms(boxes, scores, 0.5, len(dets))]
        # a weaker box mostly inside a stronger one is a part of it (a torso, a head)
        out: list[Detection] = []
        for det in kept:  # best first
            if not any(_covered(det.box, better.box) >= 0.6 for better in out):
                out.append(det)
        return out

    # -- tracks and reports ----------------------------------------------------------
    def _note_zones(self, track: Track) -> None:
        for zone in self.zones:
            if zone.name not in track.zones and zone.accepts(track.label) \
                    and zone.contains_box(track.box):
                track.zones.append(zone.name)

    def _qualifies(self, track: Track, now: float) -> bool:
        s = self.settings
        if track.hits < MIN_HITS or track.best_score < s.min_score or track.max_area < s.min_area:
            return False
        if self.zones and not track.zones:
            return False
        return bool(self.armed(now))

    def _consider(self, track: Track, now: float, mono: float) -> None:
        state = (tuple(track.zones), round(track.best_score, 2))
        if not track.alerting:
            if self._qualifies(track, now):
                track.alerting = True
                track.last_event, track.sent_state = mono, state
                self.stats.alerts += 1
                self.on_track(self._report(track, "start", now, snapshot=True))
        elif state != track.sent_state and mono - track.last_event >= \
                self.settings.update_interval_s:
            track.last_event, track.sent_state = mono, state
            self.on_track(self._report(track, "update", now))

    def _end(self, track: Track, now: float) -> None:
        if track.alerting:
            self.on_track(self._report(track, "end", now, snapshot=True, ended=track.last_seen))

    def _report(self, track: Track, phase: str, now: float, *, snapshot: bool = False,
                ended: float | None = None) -> TrackReport:
        jpeg = None
        if snapshot and track.best_frame is not None:
            rgb = cv2.cvtColor(track.best_frame, cv2.COLOR_YUV2RGB_I420)
            jpeg = encode_jpeg(rgb, track.best_box,
                               f"{track.label} {track.best_score:.2f}")
        return TrackReport(self.camera, phase, track.id, track.label,
                           round(track.best_score, 3), track.box, list(track.zones),
                           track.first_seen, ended, jpeg, now)

    def _report_tamper(self, yuv: np.ndarray, kind: str, phase: str, now: float) -> None:
        rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
        self.on_tamper(TamperReport(self.camera, kind, phase, now, encode_jpeg(rgb)))


def _covered(box: Box, by: Box) -> float:
    """The fraction of `box`'s area that lies inside `by`."""
    iw = min(box[2], by[2]) - max(box[0], by[0])
    ih = min(box[3], by[3]) - max(box[1], by[1])
    own = (box[2] - box[0]) * (box[3] - box[1])
    return iw * ih / own if iw > 0 and ih > 0 and own > 0 else 0.0


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _pad(box: Box, fraction: float) -> Box:
    dx, dy = (box[2] - box[0]) * fraction, (box[3] - box[1]) * fraction
    return (max(0.0, box[0] - dx), max(0.0, box[1] - dy),
            min(1.0, box[2] + dx), min(1.0, box[3] + dy))


def _contains(outer: Box, box: Box) -> bool:
    clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], 1.0), min(box[3], 1.0))
    return (outer[0] <= clipped[0] + 1e-6 and outer[1] <= clipped[1] + 1e-6
            and clipped[2] <= outer[2] + 1e-6 and clipped[3] <= outer[3] + 1e-6)


def _inside(box: Box, outer: Box) -> bool:
    """Whether the centre of `box` lies in `outer`."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]
