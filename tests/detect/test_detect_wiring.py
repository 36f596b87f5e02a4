"""The detect area's wiring: what `build(ctx)` makes of the config and `ctx.shared`."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from drivers.cameras.base import StreamInput
from firmware.bus import EventBus
from firmware.config import ConfigError, parse
from firmware.wiring import Context
from firmware.wiring.detect import DetectService, build
from inference.settings import DetectSettings
from tests.waiting import all_of, wait_for


def config(models_dir: Path | None, enabled: bool = True, **detect):
    data = {
        "node": {"id": "rw05"},
        "cameras": [
            {"name": "gang", "url": "rtsp://cam1/main", "substream_url": "rtsp://cam1/sub"},
            {"name": "pos", "url": "rtsp://cam2/main"},
            {"name": "off", "url": "rtsp://cam3/main", "enabled": False},
        ],
        "detect": {"enabled": enabled, **detect},
    }
    if models_dir is not None:
        data["detect"]["model"] = str(models_dir / "pose_detection.tflite")
    return parse(data)


class Registry:
    """Stands in for the cameras area's registry."""

    def __init__(self, sources: dict[str, StreamInput]) -> None:
        self.sources = sources
        self.states: list[tuple] = []
        self.frame_reports: list[int] = []
        self.expected_fps: list[float | None] = []

    def get(self, name: str):
        if name not in self.sources:
            raise KeyError(name)
        return SimpleNamespace(main=self.sources[name], detect=self.sources[name],
                               reachable=lambda: None)

    def report_state(self, name, role, state, reason=""):
        self.states.append((name, role, state, reason))

    def report_frames(self, name, role, count, expected_fps=None):
        self.frame_reports.append(count)
        self.expected_fps.append(expected_fps)


def context(cfg, tmp_path: Path, **shared) -> Context:
    shared.setdefault("armed", lambda now=None: True)  # the alarm area's, built after us
    return Context(config=cfg, bus=EventBus(), health=lambda: {}, state_dir=tmp_path,
                   shared=dict(shared))


def test_disabled_detection_builds_nothing(tmp_path: Path) -> None:
    ctx = context(config(None, enabled=False), tmp_path, snapshot="cameras'")
    assert build(ctx) == []
    assert ctx.shared["snapshot"] == "cameras'"


def test_sources_fall_back_to_camera_urls(tmp_path: Path, models_dir: Path) -> None:
    [service] = build(context(config(models_dir), tmp_path))
    assert isinstance(service, DetectService)
    assert service.sources == {"gang": StreamInput("rtsp://cam1/sub"),
                               "pos": StreamInput("rtsp://cam2/main")}


def test_registry_sources_snapshot_and_armed_lookup(tmp_path: Path, models_dir: Path) -> None:
    clip = tmp_path / "gang.mp4"
    import subprocess

    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=5:duration=30", "-c:v", "libx264",
                    "-preset", "ultrafast", str(clip)], check=True)
    registry = Registry({"gang": StreamInput(str(clip), {"re": True})})
    asked: list[str] = []
    ctx = context(config(models_dir, fps=5), tmp_path, cameras=registry,
                  snapshot=lambda cam, timeout=3.0: asked.append(cam) or b"fallback")
    [service] = build(ctx)
    assert list(service.sources) == ["gang"]  # "pos" is not in the registry
    ctx.shared["armed"] = lambda now=None: False  # the alarm area comes after detection
    assert service.loop._is_armed(time.time()) is False
    service.start()
    try:
        wait_for(lambda: service.snapshot("gang"), 20, "a decoded frame of gang")
        image = cv2.imdecode(np.frombuffer(ctx.shared["snapshot"]("gang"), np.uint8),
                             cv2.IMREAD_COLOR)
        assert image.shape == (360, 640, 3) and image.std() > 20
        assert ctx.shared["snapshot"]("pos") == b"fallback" and asked == ["pos"]
        assert ("gang", "detect", "online", "") in registry.states
        health = service.health()
        assert health["frames_in"] > 0 and health["model_type"] == "mediapipe"
        assert set(health["cameras"]) == {"gang"}
    finally:
        service.stop()


def test_detection_with_no_model_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        config(None)
    assert [p.path for p in caught.value.problems] == ["detect.model"]
    assert "no model" in str(caught.value)
    config(None, enabled=False)  # no detection, no model needed


def test_service_with_no_model_reports_offline() -> None:
    """Settings made in code skip the file's checks: the loop still refuses, and says so."""
    registry = Registry({"gang": StreamInput("x")})
    service = DetectService(EventBus(), DetectSettings(enabled=True),
                            {"gang": StreamInput("x")}, registry=registry)
    with pytest.raises(RuntimeError, match="no model"):
        service.run()
    assert registry.states[0][2:] == ("offline", "no model configured ([detect] model)")


def test_unloadable_model_reports_offline_with_the_reason(tmp_path: Path) -> None:
    registry = Registry({"gang": StreamInput("x")})
    bad = tmp_path / "not-a-model.tflite"
    bad.write_bytes(b"not a flatbuffer")
    cfg = config(None, model=str(bad))
    [service] = build(context(cfg, tmp_path, cameras=registry))
    with pytest.raises(Exception):  # noqa: B017 - whatever the runtime raises
        service.run()
    _, role, state, reason = registry.states[0]
    assert (role, state) == ("detect", "offline")
    assert reason.startswith(f"cannot load model {bad}")


def test_odd_detect_size_is_a_config_error() -> None:
    from firmware.config import ConfigError

    with pytest.raises(ConfigError, match="even"):
        config(None, width=641)


TRIANGLE = [[0, 0], [1, 0], [1, 1]]


@pytest.mark.parametrize("detect, path", [
    ({"zones": [{"camera": "gang", "name": "a", "points": TRIANGLE},
                {"camera": "gnag", "name": "gate", "points": TRIANGLE}]}, "detect.zones[1].camera"),
    ({"masks": [{"camera": "gnag", "points": TRIANGLE}]}, "detect.masks[0].camera"),
    ({"cameras": {"gnag": {"min_score": 0.8}}}, "detect.cameras.gnag"),
])
def test_detection_settings_of_an_unknown_camera_are_a_config_error(
        models_dir: Path, detect: dict, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(models_dir, **detect)
    [problem] = caught.value.problems
    assert problem.path == path and problem.value == "gnag"
    assert "cameras: gang, off, pos" in problem.message


def test_per_camera_overrides(tmp_path: Path, models_dir: Path) -> None:
    """Thresholds, labels and zones belong to their camera; the rest comes from [detect]."""
    cfg = config(models_dir, min_score=0.6, pre_s=5, zones=[
        {"camera": "gang", "name": "gate", "points": TRIANGLE}],
        cameras={"pos": {"min_score": 0.8, "objects": ["car"], "post_s": 60,
                         "zones": [{"name": "yard", "points": TRIANGLE}]},
                 "gang": {"enabled": False}})
    gang, pos = cfg.detect.for_camera("gang"), cfg.detect.for_camera("pos")
    assert (pos.min_score, pos.objects, pos.pre_s, pos.post_s) == (0.8, ["car"], 5, 60)
    assert [(z.camera, z.name) for z in pos.zones] == [("pos", "yard")]
    assert not gang.enabled and [z.name for z in gang.zones] == ["gate"]
    [service] = build(context(cfg, tmp_path))
    assert list(service.sources) == ["pos"]  # detection is off on gang
    assert service.loop.camera_settings["pos"].min_score == 0.8


@pytest.mark.slow
def test_restarted_service_reports_frames_afresh(tmp_path: Path, models_dir: Path) -> None:
    source = StreamInput("testsrc2=size=640x360:rate=10", {"f": "lavfi", "re": True})
    registry = Registry({"gang": source})
    [service] = build(context(config(models_dir), tmp_path, cameras=registry))
    for _ in range(2):  # as the supervisor does after a crash
        service.start()
        try:
            wait_for(lambda: service.health()["frames_in"] >= 8, 20, "8 frames")
        finally:
            service.stop()
    assert len(registry.frame_reports) >= 2
    assert all_of(registry.frame_reports, lambda count: count > 0, "frame reports")
    # the detect stream is judged against the rate detection decodes at ([detect] fps)
    assert set(registry.expected_fps) == {5.0}


def test_a_broken_camera_does_not_stop_the_others(tmp_path: Path, models_dir: Path) -> None:
    good = StreamInput("testsrc2=size=640x360:rate=10", {"f": "lavfi", "re": True})
    registry = Registry({"gang": good, "pos": StreamInput(str(tmp_path / "gone.mp4"))})
    [service] = build(context(config(models_dir), tmp_path, cameras=registry))
    service.start()
    try:
        wait_for(lambda: service.health()["cameras"].get("gang", {}).get("frames_in", 0) >= 10
                 and ("pos", "detect", "offline") in [s[:3] for s in registry.states],
                 20, "gang's frames and pos offline")
        cams = service.health()["cameras"]
    finally:
        service.stop()
    assert cams["gang"]["frames_in"] >= 10 and cams["pos"]["frames_in"] == 0
    assert cams["pos"]["decoder"]["state"] == "offline"
    assert ("gang", "detect", "online", "") in registry.states


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_decoder_restarts_as_soon_as_the_camera_is_back(tmp_path: Path, models_dir: Path) -> None:
    """With the camera registry, the detect decoder's backoff is cut short by the camera's
    `reachable` check: it restarts when the camera answers, not when the backoff ends."""
    from devtools.rtsp_camera import RtspTestCamera
    from drivers.cameras.registry import CameraRegistry
    from drivers.cameras.rtsp import RtspCamera

    server = RtspTestCamera().start()
    registry = CameraRegistry([RtspCamera("gang", server.plain_url, timeout_s=3)])
    [service] = build(context(config(models_dir), tmp_path, cameras=registry))

    def detect_state() -> str:
        return registry.roles("gang").get("detect", ("starting", ""))[0]

    service.start()
    try:
        wait_for(lambda: detect_state() == "online", 30, "the decoder online")
        server.stop()
        wait_for(lambda: detect_state() == "offline", 15, "the decoder offline")
        process = service.readers["gang"].process
        # failed restarts against the dead camera, each wait drawn with jitter under a
        # ceiling of 1, 2, 4, 8, 16... s, until one of 8 s or more begins
        delay = wait_for(lambda: process.last_delay_s >= 8 and process.last_delay_s, 90,
                         "a wait of 8 s or more")
        backoff_from = time.monotonic()
        time.sleep(1.5)  # the scenario, not a synchronisation: the camera stays down a while
        server.start()
        back = time.monotonic()
        wait_for(lambda: detect_state() == "online", 30, "the decoder back online")
        online = time.monotonic()
    finally:
        service.stop()
        server.close()
    assert back < backoff_from + delay - 2, "the camera came back too late"
    # online before the backoff alone would even have started the next decoder
    assert online < backoff_from + delay, (online - back, delay)


def test_clips_are_kept_with_the_camera_s_own_pre_and_post() -> None:
    from inference.pipeline import TrackReport
    from inference.service import DetectionLoop

    settings = DetectSettings(enabled=True, pre_s=10, post_s=30,
                              cameras={"pos": {"pre_s": 2, "post_s": 60}})
    clips: list[tuple] = []
    loop = DetectionLoop(settings, {"gang": StreamInput("x"), "pos": StreamInput("y")},
                         on_protect=lambda *clip: clips.append(clip))
    for camera in ("gang", "pos"):
        loop.publish_track(TrackReport(camera=camera, phase="end", track_id=camera, label="p",
                                       score=0.9, box=(0, 0, 1, 1), zones=[], started=100.0,
                                       ended=110.0))
    assert clips == [("gang", 90.0, 140.0, ("gang",)), ("pos", 98.0, 170.0, ("pos",))]
