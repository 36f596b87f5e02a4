"""The camera registry: state derived from consumer reports, events, health."""

from __future__ import annotations

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


def test_fps_from_frame_reports_and_low_fps_degrades(clock):
    reg, _ = make(expected_fps={"gate": 15}, fps_settle_s=0)
    reg.report_state("gate", "detect", "online", "")
    for _ in range(5):
        reg.report_frames("gate", "detect", 3)  # 3 frames per 0.1 s = 30 fps
        clock.now += 0.1
    fps = reg.health()["gate"]["fps"]
    assert 20 < fps < 40
    reg2, _ = make(expected_fps={"gate": 15}, fps_settle_s=0)
    reg2.report_state("gate", "detect", "online", "")
    for _ in range(5):  # 4 fps where detection asked for 10
        reg2.report_frames("gate", "detect", 1, expected_fps=10)
        clock.now += 0.25
    reg2.refresh()
    assert reg2.state("gate")[0] == "degraded"
    assert reg2.state("gate")[1].endswith(" fps of 10 (detect stream)")


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


def test_expected_fps_from_probe_unless_configured(clock):
    reg, _ = make(fps_settle_s=0)
    reg.expect_fps("gate", 25.0, if_unset=True)  # probed: 25 fps
    reg.expect_fps("gate", 8.0, if_unset=True)  # a later probe does not override it
    reg.report_state("gate", "main", "online", "")
    for _ in range(4):
        reg.report_frames("gate", "main", 1)  # 10 fps, less than half of 25
        clock.now += 0.1
    reg.refresh()
    state, reason = reg.state("gate")
    assert state == "degraded"
    assert reason.startswith("low frame rate: ") and reason.endswith(" fps of 25")


class FakeClock:
    """Stands in for the registry's `time` module: frame rates from exact timestamps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    import drivers.cameras.registry as registry_module

    fake = FakeClock()
    monkeypatch.setattr(registry_module, "time", fake)
    return fake


def feed(reg, clock, role, fps, seconds, **kw):
    """`seconds` of frame reports of `role` at `fps`, one report a second, refreshing."""
    for _ in range(int(seconds)):
        clock.now += 1.0
        reg.report_frames("gate", role, round(fps), **kw)
        reg.refresh()


def test_detect_stream_is_judged_against_the_rate_detection_asked_for(clock):
    # the demo: a 15 fps camera, the recorder's main role online but with no frame figure
    # yet (it reports per segment), detection decoding at its 5 fps: that is not "low"
    reg, changes = make(expected_fps={"gate": 15}, fps_settle_s=0)
    reg.report_state("gate", "main", "online", "")
    reg.report_state("gate", "detect", "online", "")
    feed(reg, clock, "detect", 5, 20, expected_fps=5)
    assert reg.state("gate") == ("online", "")
    assert changes == [("gate", "online", "")]
    # a consumer that declares nothing: the detect stream is not held to the camera's 15
    reg2, changes2 = make(expected_fps={"gate": 15}, fps_settle_s=0)
    reg2.report_state("gate", "detect", "online", "")
    feed(reg2, clock, "detect", 5, 20)
    assert changes2 == [("gate", "online", "")]
    # while the main stream still is: 5 of 15 is low
    feed(reg, clock, "main", 5, 20)
    assert reg.state("gate") == ("degraded", "low frame rate: 5.0 fps of 15")
    # and detection getting 2 of its 5 is low too, said as the detect stream's
    reg3, _ = make(expected_fps={"gate": 15}, fps_settle_s=0)
    reg3.report_state("gate", "detect", "online", "")
    feed(reg3, clock, "detect", 2, 20, expected_fps=5)
    assert reg3.state("gate") == ("degraded", "low frame rate: 2.0 fps of 5 (detect stream)")


def test_declared_rate_is_capped_by_what_the_camera_sends(clock):
    reg, changes = make(expected_fps={"gate": 4}, fps_settle_s=0)
    reg.report_state("gate", "detect", "online", "")
    feed(reg, clock, "detect", 4, 20, expected_fps=5)  # a 4 fps camera gives 4 of 5 asked
    assert changes == [("gate", "online", "")]


def test_a_rate_hovering_at_the_threshold_does_not_flap(clock):
    reg, changes = make(expected_fps={"gate": 10}, fps_settle_s=0)
    reg.report_state("gate", "main", "online", "")
    feed(reg, clock, "main", 10, 12)
    assert changes == [("gate", "online", "")]
    for _ in range(4):  # around half of 10: 4 then 6 fps, over and over
        feed(reg, clock, "main", 4, 12)
        feed(reg, clock, "main", 6, 12)
    assert changes == [("gate", "online", ""), ("gate", "degraded", changes[1][2])]
    assert changes[1][2].startswith("low frame rate: ")  # one event, its reason kept
    assert reg.health()["gate"]["fps"] == 6.0  # health still shows the rate of now
    feed(reg, clock, "main", 9, 12)  # clearly back
    assert changes[-1] == ("gate", "online", "")
    assert len(changes) == 3
    # a reconnect starts afresh: no verdict carried over from before the outage
    feed(reg, clock, "main", 4, 12)
    reg.report_state("gate", "main", "offline", "exited with code 1")
    reg.report_state("gate", "main", "online", "")
    assert changes[-1] == ("gate", "online", "")


def test_credentials_never_in_repr_health_or_state_event_reasons():
    import json
    from dataclasses import dataclass

    from firmware.events import CameraStateEvent

    reg, changes = make()
    cam = reg.get("gate")
    secrets = ("p@ss:word", "p%40ss%3Aword", "admin:")

    def clean(text: str) -> bool:
        return not any(s in text for s in secrets)

    @dataclass
    class Holder:  # a consumer's dataclass holding a stream: its repr uses repr(stream)
        stream: StreamInput

    for text in (repr(cam.main), repr(cam.detect), repr([cam.main]), repr({"s": cam.main}),
                 repr(Holder(cam.main)), repr(cam), f"{cam.main!r}"):
        assert clean(text), text
    assert repr(cam.main) == ("StreamInput(url='rtsp://***:***@10.0.0.1/main', "
                              "options={'rtsp_transport': 'tcp', 'timeout': 10000000})")
    assert cam.main.url.startswith("rtsp://admin:")  # ffmpeg still gets the real URL
    # a consumer supervised without redact= reports ffmpeg's raw last line
    raw = f"{cam.main.url}: Connection refused"
    reg.report_state("gate", "main", "offline", raw)
    reg.report_state("gate", "detect", "online", f"{cam.detect.url}: slow")
    reg.report_state("lane", "main", "offline", raw)
    reg.report_info("gate", source=cam.main.url)
    health = json.dumps(reg.health())
    assert clean(health), health
    assert "rtsp://***:***@10.0.0.1/main" in health
    assert changes and all(clean(reason) for _, _, reason in changes)
    for camera, state, reason in changes:
        event = CameraStateEvent(camera=camera, state=state, reason=reason)
        assert clean(repr(event)) and clean(json.dumps(event.payload(), default=str))
