"""Acceptance: a synthetic street clip (a real person photo walking across) fed as a camera
through real ffmpeg, the real model and a real event bus gives one person track."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from devtools.scene import render_scene
from drivers.cameras.base import StreamInput
from firmware.bus import EventBus
from firmware.events import ObjectEvent, ProtectClip, TamperEvent
from firmware.wiring.detect import DetectService
from inference.detector import Detector
from inference.frames import decode_file
from inference.pipeline import CameraPipeline
from inference.settings import DetectSettings
from tests.waiting import wait_for

WALK = (2.0, 8.0)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scene") / "street.mp4"
    return render_scene(out, seconds=11, size=(640, 360), fps=10, walk=WALK)


class RecordingRegistry:
    """Stands in for the cameras area's registry: records what detection reports."""

    def __init__(self) -> None:
        self.states: list[tuple[str, str, str]] = []
        self.frames = 0

    def get(self, name: str):
        raise KeyError(name)  # no camera object: the decoder restarts on its own backoff

    def report_state(self, name: str, role: str, state: str, reason: str = "") -> None:
        self.states.append((name, role, state))

    def report_frames(self, name: str, role: str, count: int,
                      expected_fps: float | None = None) -> None:
        self.frames += count


def run_service(scene: Path, settings: DetectSettings, **kwargs) -> tuple[list, DetectService]:
    bus = EventBus()
    got: list = []
    lock = threading.Lock()

    def keep(msg: object) -> None:
        with lock:
            got.append(msg)

    for kind in (ObjectEvent, TamperEvent, ProtectClip):
        bus.subscribe(kind, keep)
    bus.start()
    service = DetectService(bus, settings, {"street": StreamInput(str(scene))},
                            drop_when_full=False, stream_clock=True,
                            restart_delay_s=600, **kwargs)
    service.start()

    def processed() -> bool:
        reader = service.readers.get("street")
        return reader is not None and reader.streams_ended and not reader.pool.pending()

    wait_for(processed, 60, "the whole clip processed")
    health = service.health()
    service.stop()
    bus.stop()
    service.last_health = health  # type: ignore[attr-defined]
    return got, service


@pytest.mark.slow
def test_walking_person_gives_one_track_start_and_end(scene: Path, models_dir: Path) -> None:
    settings = DetectSettings(enabled=True, model=models_dir / "pose_detection.tflite",
                              fps=5, tamper={"enabled": False})
    registry = RecordingRegistry()
    got, service = run_service(scene, settings, registry=registry)
    objects = [m for m in got if isinstance(m, ObjectEvent)]
    starts = [e for e in objects if e.phase == "start"]
    ends = [e for e in objects if e.phase == "end"]
    assert len(starts) == 1 and len(ends) == 1, objects
    assert {e.track_id for e in objects} == {starts[0].track_id}
    for event in objects:  # what the MQTT area will publish
        payload = json.loads(json.dumps(event.payload()))
        assert payload["type"] == "object" and len(payload["box"]) == 4
        assert payload["snapshot"] is (event.phase in ("start", "end"))
    assert starts[0].label == "person" and ends[0].score >= settings.min_score
    assert starts[0].camera == "street"
    # the track spans the walk (stream time: 5 fps from the reader's start)
    assert ends[0].ended - starts[0].started == pytest.approx(WALK[1] - WALK[0], abs=1.5)
    protect = [m for m in got if isinstance(m, ProtectClip)]  # at start, widened at end
    assert len(protect) == 2 and {p.event_id for p in protect} == {starts[0].track_id}
    for clip in protect:
        assert clip.start == pytest.approx(starts[0].started - settings.pre_s)
        assert clip.cameras == ("street",)
    assert starts[0].started + settings.post_s <= protect[0].end < protect[1].end
    assert protect[1].end == pytest.approx(ends[0].ended + settings.post_s)
    # the snapshot is a JPEG of the frame with the box drawn in red around the person
    for event in (starts[0], ends[0]):
        img = cv2.imdecode(np.frombuffer(event.snapshot, np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (360, 640, 3)
        red = (img[..., 2] > 200) & (img[..., 1] < 60) & (img[..., 0] < 60)
        ys, xs = np.nonzero(red)
        assert len(xs) > 200, "no red box drawn"
    # the end snapshot is the best view: a box of person size (the photo is 180 px high)
    assert 60 <= xs.max() - xs.min() <= 300 and 120 <= ys.max() - ys.min() <= 300
    health = service.last_health
    assert health["frames_in"] >= 50
    assert health["detector_runs"] > 0 and health["skipped_by_motion"] > 0
    assert health["tracks_total"] == 1 and health["inference_ms_p50"] > 0
    assert ("street", "detect", "online") in registry.states
    assert registry.frames > 0


def decode_all(scene: Path, fps: float = 5.0) -> list[tuple[float, np.ndarray]]:
    """Every frame of the clip through the real FrameReader, with stream timestamps."""
    return decode_file(scene, 640, 360, fps, timeout=30)


@pytest.fixture(scope="module")
def frames(scene: Path) -> list[tuple[float, np.ndarray]]:
    return decode_all(scene)


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> Detector:
    return Detector(models_dir / "pose_detection.tflite", min_score=0.4)


def replay(frames: list, settings: DetectSettings, detector: Detector,
           armed=lambda now: True) -> tuple[list, CameraPipeline]:
    reports: list = []
    pipe = CameraPipeline("street", settings, detector, 640, 360, on_track=reports.append,
                          armed=armed)
    for ts, yuv in frames:
        pipe.process(yuv, ts)
    pipe.finish(frames[-1][0] + 10)
    return reports, pipe


@pytest.mark.slow
def test_zone_where_the_person_walks_is_entered(frames, detector) -> None:
    settings = DetectSettings(zones=[
        {"camera": "street", "name": "road", "points": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]},
        {"camera": "street", "name": "sky", "points": [[0, 0], [1, 0], [1, 0.2], [0, 0.2]]},
        {"camera": "other", "name": "road2", "points": [[0, 0.6], [1, 0.6], [1, 1], [0, 1]]},
    ], tamper={"enabled": False})
    reports, _ = replay(frames, settings, detector)
    assert [r.phase for r in reports if r.phase != "update"] == ["start", "end"]
    assert reports[-1].zones == ["road"]


@pytest.mark.slow
def test_no_alert_outside_zones_when_disarmed_or_masked(frames, detector) -> None:
    sky = DetectSettings(zones=[{"camera": "street", "name": "sky",
                                 "points": [[0, 0], [1, 0], [1, 0.2], [0, 0.2]]}],
                         tamper={"enabled": False})
    reports, pipe = replay(frames, sky, detector)
    assert reports == [] and pipe.tracker.total == 1  # tracked, but never in the zone
    reports, pipe = replay(frames, DetectSettings(tamper={"enabled": False}), detector,
                           armed=lambda now: False)
    assert reports == [] and pipe.tracker.total == 1
    masked = DetectSettings(masks=[{"camera": "street",
                                    "points": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
                            tamper={"enabled": False})
    reports, pipe = replay(frames, masked, detector)
    assert reports == [] and pipe.stats.detector_runs == 0


@pytest.mark.slow
def test_high_min_score_and_min_area_suppress_alerts(frames, detector) -> None:
    reports, _ = replay(frames, DetectSettings(min_score=0.99, tamper={"enabled": False}),
                        detector)
    assert reports == []
    reports, _ = replay(frames, DetectSettings(min_area=0.5, tamper={"enabled": False}),
                        detector)
    assert reports == []


def test_empty_street_gives_no_track(tmp_path: Path, detector) -> None:
    clip = render_scene(tmp_path / "empty.mp4", seconds=4, size=(640, 360), fps=10, walk=None)
    reports, pipe = replay(decode_all(clip), DetectSettings(tamper={"enabled": False}), detector)
    assert reports == [] and pipe.tracker.total == 0 and pipe.stats.detector_runs == 0
