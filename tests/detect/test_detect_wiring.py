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
from firmware.config import parse
from firmware.wiring import Context
from firmware.wiring.detect import DetectService, build


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
    assert service._is_armed(time.time()) is False
    service.start()
    try:
        deadline = time.monotonic() + 20
        jpeg = None
        while jpeg is None and time.monotonic() < deadline:
            jpeg = service.snapshot("gang")
            time.sleep(0.1)
        assert jpeg is not None
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


def test_missing_model_reports_offline(tmp_path: Path) -> None:
    registry = Registry({"gang": StreamInput("x")})
    [service] = build(context(config(None), tmp_path, cameras=registry))
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


def test_zone_of_an_unknown_camera_is_logged(tmp_path: Path, models_dir: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(models_dir, zones=[{"camera": "gnag", "name": "gate",
                                     "points": [[0, 0], [1, 0], [1, 1]]}])
    build(context(cfg, tmp_path))
    assert "'gnag', which is not configured" in caplog.text


@pytest.mark.slow
def test_restarted_service_reports_frames_afresh(tmp_path: Path, models_dir: Path) -> None:
    source = StreamInput("testsrc2=size=640x360:rate=10", {"f": "lavfi", "re": True})
    registry = Registry({"gang": source})
    [service] = build(context(config(models_dir), tmp_path, cameras=registry))
    for _ in range(2):  # as the supervisor does after a crash
        service.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and service.health()["frames_in"] < 8:
            time.sleep(0.1)
        service.stop()
    assert len(registry.frame_reports) >= 2
    assert all(count > 0 for count in registry.frame_reports)
    # the detect stream is judged against the rate detection decodes at ([detect] fps)
    assert set(registry.expected_fps) == {5.0}


def test_a_broken_camera_does_not_stop_the_others(tmp_path: Path, models_dir: Path) -> None:
    good = StreamInput("testsrc2=size=640x360:rate=10", {"f": "lavfi", "re": True})
    registry = Registry({"gang": good, "pos": StreamInput(str(tmp_path / "gone.mp4"))})
    [service] = build(context(config(models_dir), tmp_path, cameras=registry))
    service.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            cams = service.health()["cameras"]
            if cams.get("gang", {}).get("frames_in", 0) >= 10 and \
                    ("pos", "detect", "offline") in [s[:3] for s in registry.states]:
                break
            time.sleep(0.1)
        cams = service.health()["cameras"]
    finally:
        service.stop()
    assert cams["gang"]["frames_in"] >= 10 and cams["pos"]["frames_in"] == 0
    assert cams["pos"]["decoder"]["state"] == "offline"
    assert ("gang", "detect", "online", "") in registry.states


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_decoder_restarts_as_soon_as_the_camera_is_back(tmp_path: Path, models_dir: Path) -> None:
    """With the camera registry, the detect decoder's backoff is cut short by the camera's
    `reachable` check: it restarts when the camera answers, not when the backoff ends."""
    from drivers.cameras.registry import CameraRegistry
    from drivers.cameras.rtsp import RtspCamera
    from firmware.devtools.rtsp_camera import RtspTestCamera

    server = RtspTestCamera().start()
    registry = CameraRegistry([RtspCamera("gang", server.plain_url, timeout_s=3)])
    [service] = build(context(config(models_dir), tmp_path, cameras=registry))

    def detect_state() -> str:
        return registry.roles("gang").get("detect", ("starting", ""))[0]

    def wait(cond, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.05)
        return time.monotonic()

    service.start()
    try:
        wait(lambda: detect_state() == "online", 30)
        server.stop()
        wait(lambda: detect_state() == "offline", 15)
        process = service.readers["gang"].process
        # failed restarts against the dead camera: 1, 2, 4 s... until an 8 s wait begins
        backoff_from = wait(lambda: process.last_delay_s >= 8, 30)
        time.sleep(1.5)  # the readiness check sees the camera down during this wait
        server.start()
        back = time.monotonic()
        online = wait(lambda: detect_state() == "online", 30)
    finally:
        service.stop()
        server.close()
    assert back < backoff_from + process.last_delay_s - 2, "the camera came back too late"
    # online before the backoff alone would even have started the next decoder
    assert online < backoff_from + process.last_delay_s, (online - back, process.last_delay_s)
    assert online - back < 5.0  # poll 0.5 s + ffmpeg's RTSP start (~2 s here)
