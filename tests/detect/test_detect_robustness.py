"""Robustness of the pipeline and the service around it: a stream that stops mid-alert,
detect sizes whose chroma rows are odd, a frame that raises, and wall-clock steps.

A stub detector stands in for the model: it finds a person wherever the frame is bright,
so these tests need neither a model nor ffmpeg."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from firmware.bus import EventBus
from firmware.events import ObjectEvent, ProtectClip
from firmware.wiring.detect import DetectService
from inference.detector import Detection
from inference.pipeline import CameraPipeline
from inference.settings import DetectSettings


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
    pipe.on_track = service._publish_track
    return service, got, bus


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_service_ends_the_alert_and_protects_the_clip_of_a_camera_gone_dark() -> None:
    pipe, _ = pipeline(pre_s=10, post_s=30)
    service, got, bus = service_with(pipe)
    try:
        now = time.time()
        frames = walking(640, 360, 30)
        for i, yuv in enumerate(frames):
            pipe.process(yuv, now - (len(frames) - i) * 0.2)
        # a ProtectClip at the start already: the beginning of a long event is kept
        wait_for(lambda: len(got) >= 2)
        [start] = [m for m in got if isinstance(m, ObjectEvent)]
        [clip] = [m for m in got if isinstance(m, ProtectClip)]
        assert start.phase == "start" and clip.event_id == start.track_id
        assert clip.start == start.started - 10 and clip.end > start.started + 30
        assert clip.cameras == ("gate",)
        # the camera goes dark: no frame since 1 s -> nothing; since 4 s -> end
        service._last_frame["gate"] = time.monotonic() - 1.0
        service._check_idle("gate")
        time.sleep(0.2)
        assert len(got) == 2
        service._last_frame["gate"] = time.monotonic() - 4.0
        service._check_idle("gate")
        wait_for(lambda: len(got) >= 4)
        end = [m for m in got if isinstance(m, ObjectEvent)][-1]
        clip2 = [m for m in got if isinstance(m, ProtectClip)][-1]
        assert end.phase == "end"
        assert end.track_id == start.track_id and end.ended is not None
        assert clip2.event_id == start.track_id
        assert clip2.start == clip.start and clip2.end == end.ended + 30
        assert service.health()["tracks_active"] == 0
    finally:
        bus.stop()
