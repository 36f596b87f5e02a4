"""Robustness of the pipeline and the service around it: a stream that stops mid-alert,
detect sizes whose chroma rows are odd, a frame that raises, and wall-clock steps.

A stub detector stands in for the model: it finds a person wherever the frame is bright,
so these tests need neither a model nor ffmpeg."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from firmware.bus import EventBus
from firmware.events import ObjectEvent, ProtectClip
from firmware.wiring.detect import DetectService
from inference import detectors
from inference.detector import Detection
from inference.pipeline import CameraPipeline
from inference.settings import DetectSettings
from tests.waiting import wait_for


class StubDetector:
    """A person box in every crop with bright pixels (a blob on a dark street)."""

    input_size = 224
    min_score = 0.4
    model_type = "stub"

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.shapes.append(image.shape)
        ys, xs = np.nonzero(image[..., 0] > 180)
        if len(xs) == 0:
            return []
        h, w = image.shape[:2]
        return [Detection("person", 0.9, (xs.min() / w, ys.min() / h,
                                          (xs.max() + 1) / w, (ys.max() + 1) / h))]


def walking(width: int, height: int, n: int) -> list[np.ndarray]:
    """A dark street 10 frames, then a bright blob walking right."""
    out = []
    for i in range(n):
        yuv = np.full((height * 3 // 2, width), 128, np.uint8)
        yuv[:height] = 60
        if i > 10:
            x = 50 + (i - 10) * 12
            yuv[height // 4:height * 3 // 4, x:x + 40] = 220
        out.append(yuv)
    return out


def settings(**kw) -> DetectSettings:
    return DetectSettings(enabled=True, tamper={"enabled": False}, **kw)


def pipeline(w: int = 640, h: int = 360, **kw) -> tuple[CameraPipeline, list]:
    reports: list = []
    pipe = CameraPipeline("gate", settings(width=w, height=h, **kw), StubDetector(), w, h,
                          on_track=reports.append)
    return pipe, reports


# -- 1. a stream that stops mid-alert ----------------------------------------------------
def test_tracks_end_when_the_stream_stops() -> None:
    pipe, reports = pipeline()
    t = 1000.0
    for yuv in walking(640, 360, 30):
        pipe.process(yuv, t)
        t += 0.2
    assert [r.phase for r in reports] == ["start"]  # the camera is cut here
    pipe.idle(1.0)  # not yet lost_after_s (3 s)
    assert [r.phase for r in reports] == ["start"] and pipe.tracker.tracks
    pipe.idle(3.5)
    assert [r.phase for r in reports] == ["start", "end"] and not pipe.tracker.tracks
    end = reports[-1]
    assert end.ended == pytest.approx(t - 0.2)  # when last seen, not when given up
    assert end.snapshot is not None
    pipe.idle(10.0)  # ends once only
    assert len(reports) == 2


def service_with(pipe: CameraPipeline) -> tuple[DetectService, list, EventBus]:
    bus = EventBus()
    got: list = []
    done = threading.Event()

    def keep(msg) -> None:
        got.append(msg)
        done.set()

    for kind in (ObjectEvent, ProtectClip):
        bus.subscribe(kind, keep)
    bus.start()
    service = DetectService(bus, pipe.settings, {})
    service.pipelines["gate"] = pipe
    pipe.on_track = service.loop.publish_track
    return service, got, bus


def test_service_ends_the_alert_and_protects_the_clip_of_a_camera_gone_dark() -> None:
    pipe, _ = pipeline(pre_s=10, post_s=30)
    service, got, bus = service_with(pipe)
    try:
        now = time.time()
        frames = walking(640, 360, 30)
        for i, yuv in enumerate(frames):
            pipe.process(yuv, now - (len(frames) - i) * 0.2)
        # a ProtectClip at the start already: the beginning of a long event is kept
        wait_for(lambda: len(got) >= 2, 5, "the start and its clip")
        [start] = [m for m in got if isinstance(m, ObjectEvent)]
        [clip] = [m for m in got if isinstance(m, ProtectClip)]
        assert start.phase == "start" and clip.event_id == start.track_id
        assert clip.start == start.started - 10 and clip.end > start.started + 30
        assert clip.cameras == ("gate",)
        # the camera goes dark: no frame since 1 s -> nothing; since 4 s -> end
        service.loop._last_frame["gate"] = time.monotonic() - 1.0
        service.loop._check_idle("gate")
        assert pipe.tracker.tracks and len(got) == 2  # still tracked: nothing ended
        service.loop._last_frame["gate"] = time.monotonic() - 4.0
        service.loop._check_idle("gate")
        wait_for(lambda: len(got) >= 4, 5, "the end and its clip")
        end = [m for m in got if isinstance(m, ObjectEvent)][-1]
        clip2 = [m for m in got if isinstance(m, ProtectClip)][-1]
        assert end.phase == "end"
        assert end.track_id == start.track_id and end.ended is not None
        assert clip2.event_id == start.track_id
        assert clip2.start == clip.start and clip2.end == end.ended + 30
        assert service.health()["tracks_active"] == 0
    finally:
        bus.stop()


# -- 2. detect heights that are even but not a multiple of 4; a frame that raises ---------
@pytest.mark.parametrize("height", [362, 358, 406])
def test_crops_work_when_chroma_rows_are_not_whole(height: int) -> None:
    pipe, reports = pipeline(640, height)
    t = 1000.0
    for yuv in walking(640, height, 25):
        pipe.process(yuv, t)
        t += 0.2
    assert [r.phase for r in reports] == ["start"] and pipe.stats.detector_runs > 0
    # the crop's colours are those of the whole frame converted at once
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (height, 640, 3), np.uint8)
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    full = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)
    crop = pipe._crop_rgb(yuv, 100, 50, 224)
    assert crop.shape == (224, 224, 3)
    assert np.array_equal(crop, full[50:274, 100:324])


class FlakyDetector(StubDetector):
    """Raises on every other call (a model or conversion bug hit by some frames)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self.calls = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        if self.calls % 2:
            raise ValueError("boom")
        return super().detect(image)


@pytest.mark.timeout(60)
def test_a_frame_that_raises_is_counted_and_logged_and_the_loop_goes_on(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path) -> None:
    from drivers.cameras.base import StreamInput

    source = StreamInput("testsrc2=size=640x360:rate=10", {"f": "lavfi", "re": True})
    s = settings(model=tmp_path / "stub.tflite", fps=10)
    service = DetectService(EventBus(), s, {"gate": source},
                            make_detector=lambda settings: FlakyDetector())
    service.start()
    try:
        wait_for(lambda: service.health()["frame_errors"] >= 5, 30, "five frame errors")
        health = service.health()
    finally:
        service.stop()
    assert service.error is None  # the component did not crash
    assert health["frame_errors"] >= 5 and health["frames_in"] > health["frame_errors"]
    assert health["cameras"]["gate"]["last_frame_error"] == "ValueError: boom"
    logged = [r for r in caplog.records if "frame processing failed" in r.getMessage()]
    assert len(logged) == 1  # rate-limited: once a minute per camera


# -- 3. the wall clock steps backwards (NTP sync on a Pi without RTC) --------------------
STEP = -3600.0  # the wall clock jumps back an hour


def test_tracks_end_and_are_rechecked_across_a_backward_wall_clock_step() -> None:
    pipe, reports = pipeline()
    wall, mono = 1_800_000_000.0, 500.0
    frames = walking(640, 360, 25)
    standing = frames[-1]
    empty = walking(640, 360, 1)[0]
    for yuv in frames:
        pipe.process(yuv, wall, mono)
        wall, mono = wall + 0.2, mono + 0.2
    last_seen = wall - 0.2
    wall += STEP
    runs = pipe.stats.detector_runs
    for _ in range(50):  # 10 s standing still: no motion, re-checks keep the track
        pipe.process(standing, wall, mono)
        wall, mono = wall + 0.2, mono + 0.2
    assert 6 <= pipe.stats.detector_runs - runs <= 14
    assert pipe.tracker.total == 1 and len(pipe.tracker.tracks) == 1
    last_seen = pipe.tracker.tracks[0].last_seen
    assert last_seen < 1_800_000_000.0  # wall time after the step, as events carry it
    for _ in range(20):  # gone: the track ends lost_after_s (3 s) later, not an hour later
        pipe.process(empty, wall, mono)
        wall, mono = wall + 0.2, mono + 0.2
    assert [r.phase for r in reports] == ["start", "end"]
    assert reports[-1].ended == pytest.approx(last_seen)
    assert not pipe.tracker.tracks


def test_tamper_is_checked_across_a_backward_wall_clock_step() -> None:
    got: list = []
    s = DetectSettings(enabled=True, tamper={"persist_s": 3, "learn_s": 2})
    pipe = CameraPipeline("gate", s, StubDetector(), 640, 360, on_tamper=got.append)
    rng = np.random.default_rng(3)
    view = np.full((540, 640), 128, np.uint8)
    view[:360] = cv2.GaussianBlur(rng.integers(0, 256, (360, 640), np.uint8), (0, 0), 2)
    covered = np.full((540, 640), 128, np.uint8)
    wall, mono = 1_800_000_000.0, 500.0
    for i in range(60):  # 6 s of the normal view, then the wall clock steps; covered 6 s
        if i == 30:
            wall += STEP
        pipe.process(view if i < 30 else covered, wall, mono)
        wall, mono = wall + 0.2, mono + 0.2
    assert [(r.kind, r.phase) for r in got] == [("covered", "start")]
    assert got[0].ts < 1_800_000_000.0  # stamped with the (stepped) wall clock


def test_tracker_durations_follow_the_monotonic_clock() -> None:
    from inference.tracker import Tracker

    tracker = Tracker(lost_after_s=3.0)
    det = Detection("person", 0.9, (0.1, 0.1, 0.3, 0.6))
    [track], _, _ = tracker.update([det], 1000.0, None, 10.0)
    _, _, ended = tracker.update([], 1000.0 + STEP, None, 12.0)
    assert ended == []  # 2 s on the monotonic clock, whatever the wall clock did
    _, _, ended = tracker.update([], 1000.0 + STEP + 2, None, 13.5)
    assert ended == [track] and track.last_seen == 1000.0


def test_live_frames_carry_the_monotonic_clock() -> None:
    from drivers.cameras.base import StreamInput
    from inference.frames import FrameReader

    reader = FrameReader("gate", StreamInput("testsrc2=size=320x180:rate=10",
                                             {"f": "lavfi", "re": True}), 320, 180, fps=10)
    reader.start()
    try:
        frame = reader.pool.get(timeout=20)
        assert frame is not None
        assert abs(frame.mono - time.monotonic()) < 5 and abs(frame.ts - time.time()) < 5
        reader.pool.release(frame)
    finally:
        reader.stop()


# -- 4. no per-frame copies on the hot path ----------------------------------------------
def test_latest_frame_is_swapped_not_copied() -> None:
    pipe, _ = pipeline()
    assert pipe.snapshot() is None  # nothing adopted yet
    a, b = walking(640, 360, 30)[0], walking(640, 360, 30)[-1]
    pipe.process(a, 1000.0)
    spare = pipe.adopt(a)
    assert spare is not a and spare.shape == a.shape
    assert pipe._latest is a  # kept by reference: no 345 KB copy per frame
    spare[:] = 255  # the pool refills the buffer given back: the snapshot is unaffected
    grey = cv2.imdecode(np.frombuffer(pipe.snapshot(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert grey.max() < 100  # frame a (dark street), not the 255 written into spare
    pipe.process(b, 1000.2)
    assert pipe.adopt(b) is a  # swapped back and forth: no buffer is created per frame
    grey = cv2.imdecode(np.frombuffer(pipe.snapshot(), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert grey.max() > 200  # the blob of frame b
    with pytest.raises(ValueError):
        pipe.adopt(np.zeros((10, 10), np.uint8))


def test_letterbox_and_crop_buffers_are_reused_and_bounded() -> None:
    pipe, _ = pipeline()
    rgb_bright = np.full((360, 640, 3), 200, np.uint8)
    yuv = cv2.cvtColor(rgb_bright, cv2.COLOR_RGB2YUV_I420)
    images = []
    pipe.detector.detect = lambda image: images.append(image) or []
    pipe._detect_in(yuv, (0, -140, 640))  # 640 square around a 360 high frame: bars
    first = images[-1].copy()
    pipe._detect_in(yuv, (0, -100, 640))  # other bars: no leftovers from the first
    assert np.shares_memory(images[0], images[1])  # one buffer, not a new array per call
    second = images[-1]
    assert not first[:140].any() and not first[500:].any() and first[140:500].min() > 150
    assert not second[:100].any() and not second[460:].any() and second[100:460].min() > 150
    for side in range(224, 361, 4):  # crop sides vary frame to frame
        pipe._crop_rgb(yuv, 0, 0, side)
    sizes = {name: buf.size for name, buf in pipe._scratch.items()}
    assert sizes["crop_i420"] == 360 * 360 * 3 // 2 and sizes["crop_rgb"] == 360 * 360 * 3
    assert sizes["letterbox"] == 640 * 640 * 3


@pytest.mark.timeout(60)
def test_service_loop_ends_the_alert_when_the_decoder_dies(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Real ffmpeg, a stream that ends after 3 s and a decoder that does not come back:
    the end event and the widened ProtectClip come lost_after_s later, from the loop."""
    from drivers.cameras.base import StreamInput

    # a detector back-end is a plugin chosen by `type`: the service takes this one as it
    # takes tflite, with nothing else changed
    monkeypatch.setitem(detectors._FACTORIES, "stub", lambda settings: StubDetector())
    source = StreamInput("testsrc2=size=640x360:rate=10:duration=3", {"f": "lavfi", "re": True})
    s = settings(type="stub", model=tmp_path / "stub.tflite", fps=5, lost_after_s=1.0)
    bus = EventBus()
    got: list = []
    for kind in (ObjectEvent, ProtectClip):
        bus.subscribe(kind, got.append)
    bus.start()
    service = DetectService(bus, s, {"gate": source}, restart_delay_s=600)
    service.start()
    try:
        wait_for(lambda: any(getattr(m, "phase", "") == "end" for m in got), 30, "the end")
        assert service.readers["gate"].streams_ended  # no frames since: the decoder is down
        wait_for(lambda: sum(isinstance(m, ProtectClip) for m in got) >= 2, 5, "two clips")
        assert service.loop.detector.model_type == "stub"
    finally:
        service.stop()
        bus.stop()
    phases = [m.phase for m in got if isinstance(m, ObjectEvent)]
    assert phases[0] == "start" and phases[-1] == "end" and service.error is None
