"""The camera registry: state derived from consumer reports, events, health."""

from __future__ import annotations

import time

import pytest

from drivers.cameras.base import StreamInput, mask_credentials
from drivers.cameras.registry import CameraRegistry
from drivers.cameras.rtsp import RtspCamera, input_options, with_credentials


def make(names=("gate", "lane"), **kw):
    changes: list[tuple[str, str, str]] = []
    cams = [RtspCamera(n, f"rtsp://10.0.0.{i}/main", substream_url=f"rtsp://10.0.0.{i}/sub",
                       username="admin", password="p@ss:word")
            for i, n in enumerate(names, 1)]
    reg = CameraRegistry(cams, lambda c, s, r: changes.append((c, s, r)), **kw)
    return reg, changes


def test_get_gives_main_and_detect_streams_with_options():
    reg, _ = make()
    cam = reg.get("gate")
    assert cam.main.url == "rtsp://admin:p%40ss%3Aword@10.0.0.1/main"
    assert cam.detect.url.endswith("/sub")
    assert cam.main.options == {"rtsp_transport": "tcp", "timeout": 10_000_000}
    assert str(cam.main) == "rtsp://***:***@10.0.0.1/main"
    assert cam.main.ffmpeg_args()[-2:] == ["-i", cam.main.url]
    with pytest.raises(KeyError, match="known: gate, lane"):
        reg.get("nope")


def test_both_roles_online_then_one_down_is_degraded_then_all_down_offline():
    reg, changes = make()
    reg.report_state("gate", "main", "online", "")
    assert changes == [("gate", "online", "")]
    reg.report_state("gate", "detect", "online", "")
    assert len(changes) == 1  # no change, no event
    reg.report_state("gate", "detect", "offline", "exited with code 1: Connection refused")
    assert changes[-1][:2] == ("gate", "degraded")
    assert "detect stream offline" in changes[-1][2] and "connection refused" in changes[-1][2]
    reg.report_state("gate", "main", "offline", "exited with code 1: Connection refused")
    assert changes[-1] == ("gate", "offline", "connection refused: camera down or wrong port")
    reg.report_state("gate", "main", "online", "")
    reg.report_state("gate", "detect", "online", "")
    assert changes[-1] == ("gate", "online", "")
    health = reg.health()["gate"]
    assert health["reconnects"] == 1
    assert health["last_error"].startswith("main: ")
    assert set(health) >= {"state", "reason", "fps", "reconnects", "last_error", "kind", "stream"}
    assert health["stream"] == "rtsp://***:***@10.0.0.1/main"
    assert reg.health()["lane"]["state"] == "starting"


def test_source_offline_wins_and_reason_is_masked():
    reg, _ = make()
    reg.report_state("gate", "main", "online", "")
    reg.report_state("gate", "source", "offline",
                     "exited with code 1: rtsp://admin:secret@cam/x: weird failure")
    state, reason = reg.state("gate")
    assert state == "offline"
    assert "secret" not in reason and "***" in reason


def test_fps_from_frame_reports_and_low_fps_degrades():
    reg, _ = make(expected_fps={"gate": 15}, fps_settle_s=0)
    reg.report_state("gate", "detect", "online", "")
    for _ in range(5):
        reg.report_frames("gate", "detect", 3)  # ~3 frames per 0.1 s = ~30 fps
        time.sleep(0.1)
    fps = reg.health()["gate"]["fps"]
    assert 20 < fps < 40
    reg2, _ = make(expected_fps={"gate": 15}, fps_settle_s=0)
    reg2.report_state("gate", "detect", "online", "")
    for _ in range(5):
        reg2.report_frames("gate", "detect", 1)  # ~10 fps... then slower
        time.sleep(0.25)
    reg2.refresh()
    assert reg2.state("gate")[0] == "degraded"
    assert "low frame rate" in reg2.state("gate")[1]


def test_bad_state_is_refused():
    reg, _ = make()
    with pytest.raises(ValueError):
        reg.report_state("gate", "main", "fine", "")


def test_helpers():
    assert with_credentials("rtsp://h/p", None, "x") == "rtsp://h/p"
    assert with_credentials("rtsp://u:p@h/p", "a", "b") == "rtsp://u:p@h/p"
    assert input_options("http://h/x", timeout_s=2) == {"timeout": 2_000_000}
    assert mask_credentials("x rtsp://a:b@h/ y http://c@d/") == "x rtsp://***:***@h/ y http://***:***@d/"
    assert mask_credentials("rtsp://admin:p@ss:w0rd@10.0.0.9:554/x?a=b@c") == \
        "rtsp://***:***@10.0.0.9:554/x?a=b@c"
    assert mask_credentials("rtsp://10.0.0.9/x") == "rtsp://10.0.0.9/x"
    assert StreamInput("/dev/video0", {"f": "v4l2"}).ffmpeg_args() == ["-f", "v4l2", "-i",
                                                                        "/dev/video0"]


def test_expected_fps_from_probe_unless_configured():
    reg, _ = make(fps_settle_s=0)
    reg.expect_fps("gate", 25.0, if_unset=True)  # probed: 25 fps
    reg.expect_fps("gate", 8.0, if_unset=True)  # a later probe does not override it
    reg.report_state("gate", "main", "online", "")
    for _ in range(4):
        reg.report_frames("gate", "main", 1)  # ~10 fps, less than half of 25
        time.sleep(0.1)
    reg.refresh()
    state, reason = reg.state("gate")
    assert state == "degraded"
    assert reason.startswith("low frame rate: ") and reason.endswith(" fps of 25")
