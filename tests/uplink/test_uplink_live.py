"""Live push to a real media server (Debian's nginx-rtmp; GStreamer's RTSP server in record
mode for H.265): stream-copied, ffprobe reads what arrived; ttl, renewal, stop, the cap."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from uplink_kit import probe

from devtools.media_server import RtspRecordServer
from mqtt.schema import load
from tests.waiting import wait_for
from uplink.bandwidth import Bandwidth
from uplink.live import LiveManager, Source


class States:
    """The `live/<camera>` docs as the wiring would publish them."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.schema = jsonschema.Draft202012Validator(load("live"))

    def __call__(self, camera: str, doc: dict[str, Any]) -> None:
        self.schema.validate({"v": 1, "node": "rw05", **doc, "ts": time.time()})
        with self.cond:
            self.docs.append(doc)
            self.cond.notify_all()

    def wait(self, state: str, timeout: float = 20.0) -> dict[str, Any]:
        def found() -> list[dict[str, Any]]:
            with self.cond:
                return [d for d in self.docs if d["state"] == state]

        return wait_for(found, timeout, f"a {state!r} state (saw "
                                        f"{[d['state'] for d in self.docs]})",
                        interval=0.2, wake=self.cond)[-1]


@pytest.fixture
def ticking() -> Iterator[list[LiveManager]]:
    """Calls `tick()` of the managers put in the list twice a second, as the wiring does."""
    managers: list[LiveManager] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.5):
            for m in managers:
                m.tick()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield managers
    stop.set()
    thread.join()
    for m in managers:
        m.stop_all("test over")


def udp_bound(port: int) -> bool:
    """Something listens on UDP `port` (an SRT listener has no handshake to probe)."""
    with open("/proc/net/udp") as table:
        return any(line.split()[1].endswith(f":{port:04X}") for line in list(table)[1:])


def manager(cap_kbps: int = 0) -> tuple[LiveManager, States]:
    states = States()
    return LiveManager(Bandwidth(cap_kbps), on_state=states,
                       estimate_kbps={"main": 400, "sub": 100}.__getitem__), states


def test_h264_push_arrives_stream_copied_and_ends_at_ttl(nginx, h264_source, ticking) -> None:
    live, states = manager()
    ticking.append(live)
    dest = nginx.rtmp_url("rw05-gate")
    ok, message, data = live.start("gate", "main", 4, h264_source, dest, dest)
    assert ok, message
    assert data["until"] == pytest.approx(time.time() + 4, abs=1)
    doc = states.wait("live")
    assert doc["since"] is not None and doc["to"] == dest
    # renewal: the same command again moves `until` on, the push keeps running
    ok, message, _ = live.start("gate", "main", 5, h264_source, dest, dest)
    assert ok and message.startswith("renewed"), message
    assert live.pushes["gate"].process.restarts == 0
    off = states.wait("off", timeout=30)
    assert off["reason"] == "ttl expired"
    assert "gate" not in live.pushes
    assert live.bytes_sent() > 10_000  # counted from ffmpeg's progress, over the whole push
    arrived = probe(nginx.recording("rw05-gate"))
    # the scene is 640x360 H.264: what arrived is the camera's stream itself, not a re-encode
    assert (arrived["codec_name"], arrived["width"], arrived["height"]) == ("h264", 640, 360)
    assert float(arrived["duration"]) >= 4


def test_live_stop_ends_the_push_and_says_so(nginx, h264_source) -> None:
    live, states = manager()
    dest = nginx.rtmp_url("rw05-lane")
    assert live.start("lane", "sub", 60, h264_source, dest, dest)[0]
    states.wait("live")
    pid = live.pushes["lane"].process.pid
    assert live.stop("lane", "live-stop")
    assert states.wait("off")["reason"] == "live-stop"
    assert live.pushes == {}
    with pytest.raises(ProcessLookupError):  # the ffmpeg is gone, not left pushing
        os.kill(pid, 0)
    assert not live.stop("lane", "live-stop")


def test_unreachable_media_server_retries_and_says_why(h264_source) -> None:
    live, states = manager()
    from devtools.broker import free_port

    dest = f"rtmp://127.0.0.1:{free_port()}/live/x"
    assert live.start("gate", "main", 30, h264_source, dest, dest)[0]
    retrying = states.wait("retrying")
    assert "exited" in retrying["reason"]
    live.stop_all("test over")


def test_cap_refuses_a_push_that_does_not_fit_and_live_goes_first(nginx, h264_source) -> None:
    live, _ = manager(cap_kbps=500)
    dest = nginx.rtmp_url("a")
    ok, message, _ = live.start("a", "main", 30, h264_source, dest, dest)
    assert ok, message
    try:
        assert live.bandwidth.upload_kbps() == 100  # uploads get what live leaves
        ok, message, _ = live.start("b", "main", 30, h264_source, nginx.rtmp_url("b"), "b")
        assert not ok
        assert "cap of 500 kbps" in message and "live uses 400 kbps" in message
    finally:
        live.stop_all("test over")
    assert live.bandwidth.upload_kbps() == 500


def test_ttl_out_of_range_is_refused(h264_source) -> None:
    live, _ = manager()
    for ttl in (0, -1, 601, 365 * 86400):
        ok, message, _ = live.start("gate", "main", ttl, h264_source, "rtmp://x/y", "x")
        assert not ok and "ttl_s" in message
    assert live.pushes == {}


def test_h265_push_arrives_at_an_rtsp_record_server(h265_file) -> None:
    live, states = manager()
    with RtspRecordServer({"ronda/rw05/cam265": "h265"}) as server:
        source = Source(["-readrate", "1", "-stream_loop", "-1", "-i", str(h265_file)], "hevc")
        dest = server.url("ronda/rw05/cam265")
        assert live.start("cam265", "main", 30, source, dest, dest)[0]
        states.wait("live")
        time.sleep(2)  # on purpose: two seconds of video to receive
        live.stop("cam265", "live-stop")
        arrived = probe(server.recording("ronda/rw05/cam265"))
    assert (arrived["codec_name"], arrived["width"], arrived["height"]) == ("hevc", 320, 180)


@pytest.mark.slow
def test_video_wall_reconnects_and_stops_at_its_daily_budget(nginx, h264_source, ticking,
                                                             tmp_path) -> None:
    live, states = manager()
    usage = tmp_path / "wall.json"
    live.wall_state = usage
    dest = nginx.rtmp_url("rw05-gate-sub")
    live.add_wall("gate", h264_source, dest, dest, budget_bytes=100_000)
    ticking.append(live)
    first = states.wait("live")
    assert (first["kind"], first["stream"], first["until"]) == ("wall", "sub", None)
    # the media server goes away and comes back: the wall reconnects by itself
    nginx.stop()
    states.wait("retrying")
    states.docs.clear()
    nginx.start()
    states.wait("live", timeout=30)
    # ~185 kbps: 100 kB are used within about five seconds; then it stops and says why
    off = states.wait("off", timeout=40)
    assert off["reason"].startswith("daily budget of 0.1 MB used")
    assert "gate" not in live.pushes
    time.sleep(1.5)  # on purpose: more ticks, and it stays off
    assert "gate" not in live.pushes
    assert live.health()["gate"]["wall_bytes_today"] >= 100_000
    # the day's usage survives a restart: a new manager does not start the wall again
    again, _ = manager()
    again.wall_state = usage
    again.add_wall("gate", h264_source, dest, dest, budget_bytes=100_000)
    again.tick()
    assert again.pushes == {}


def test_live_takes_the_place_of_the_wall_and_the_wall_resumes(nginx, h264_source,
                                                               ticking) -> None:
    live, states = manager()
    live.add_wall("gate", h264_source, nginx.rtmp_url("gate-sub"), "sub")
    ticking.append(live)
    states.wait("live")
    ok, message, _ = live.start("gate", "sub", 60, h264_source, nginx.rtmp_url("x"), "x")
    assert ok and "video wall" in message
    ok, message, _ = live.start("gate", "main", 60, h264_source, nginx.rtmp_url("gate-main"),
                                "main")
    assert ok, message
    assert live.pushes["gate"].kind == "live"
    assert any(d["kind"] == "wall" and d["reason"] == "paused for a live request"
               for d in states.docs)
    assert live.stop("gate", "live-stop")
    wait_for(lambda: live.pushes.get("gate") and live.pushes["gate"].kind == "wall", 15,
             "the wall to resume")
    assert not live.stop("gate", "live-stop")  # live-stop leaves the wall alone


def test_a_source_that_stops_sending_is_restarted(nginx, h264_source, tmp_path) -> None:
    """ffmpeg keeps reporting progress while its input hangs; the push counts only new
    frames as progress, so the stall watchdog restarts it."""
    from uplink.live import LivePush

    fifo = tmp_path / "camera.ts"
    os.mkfifo(fifo)
    clip = tmp_path / "clip.ts"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i",
                    h264_source.input_args[-1], "-c", "copy", "-t", "3", "-f", "mpegts",
                    str(clip)], check=True)
    states = States()
    push = LivePush("gate", "main", Source(["-readrate", "1", "-f", "mpegts", "-i", str(fifo)],
                                           "h264"),
                    nginx.rtmp_url("stall"), "stall", None,
                    on_change=lambda p: states("gate", p.doc()), stall_after_s=2.0)
    push.start()
    writer = open(fifo, "wb")  # noqa: SIM115 - held open (and silent) on purpose
    try:
        writer.write(clip.read_bytes())  # a few seconds of video, then nothing
        writer.flush()
        states.wait("live")
        retrying = states.wait("retrying", timeout=30)
        assert retrying["reason"].startswith("no progress for 2 s")
    finally:
        push.stop("test over")
        writer.close()


def test_srt_push_arrives_as_mpegts(h264_source, tmp_path) -> None:
    """An srt:// media_url: MPEG-TS over SRT (here received by an ffmpeg SRT listener)."""
    from devtools.broker import free_port
    from drivers.process import spawn, terminate

    port = free_port()
    out = tmp_path / "received.ts"
    receiver = spawn(["ffmpeg", "-nostdin", "-loglevel", "error", "-i",
                      f"srt://127.0.0.1:{port}?mode=listener", "-c", "copy", "-f", "mpegts",
                      str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    live, states = manager()
    try:
        wait_for(lambda: udp_bound(port), 15, "the SRT listener")
        dest = f"srt://127.0.0.1:{port}?mode=caller"
        assert live.start("gate", "main", 30, h264_source, dest, dest)[0]
        states.wait("live")
        time.sleep(2)  # on purpose: two seconds of video to receive
    finally:
        live.stop_all("test over")
        terminate(receiver)
    arrived = probe(out)
    assert (arrived["codec_name"], arrived["width"]) == ("h264", 640)
    assert "mpegts" in arrived["format_name"]
