"""Driver details: HTTP cameras, USB codec choice, probe errors."""

from __future__ import annotations

import subprocess
import time

import pytest

from devtools.broker import free_port
from drivers.cameras.base import StreamInput
from drivers.cameras.probe import ProbeError, probe
from drivers.cameras.rtsp import RtspCamera
from drivers.cameras.usb import UsbCamera
from drivers.process import spawn, terminate


def test_http_camera_is_probed_like_rtsp(scene_file):
    """An HTTP camera (here ffmpeg serving MPEG-TS over HTTP) goes through the same path."""
    port = free_port()
    server = spawn(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
                    "-f", "h264", "-framerate", "15", "-i", str(scene_file), "-c", "copy",
                    "-f", "mpegts", "-listen", "1", f"http://127.0.0.1:{port}/cam.ts"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        cam = RtspCamera("web", f"http://127.0.0.1:{port}/cam.ts", username="u", password="p",
                         timeout_s=5)
        assert cam.kind == "http" and cam.port == port
        assert cam.main.options == {"timeout": 5_000_000}
        deadline = time.monotonic() + 10
        while True:  # ffmpeg's HTTP server takes one client: retry only while it refuses
            try:
                info = probe(cam.main, timeout=5)
                break
            except ProbeError as exc:
                if "refused" not in exc.reason or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # on purpose: a retry interval while the server refuses
        assert (info.codec, info.width, info.height, info.recordable) == ("h264", 640, 360, True)
        assert str(info) == "h264 640x360 15 fps"
    finally:
        terminate(server)
    assert not RtspCamera("gone", f"http://127.0.0.1:{free_port()}/x").reachable()


def test_probe_of_missing_file_says_so():
    with pytest.raises(ProbeError) as err:
        probe(StreamInput("/nonexistent/cam.ts"), timeout=2)
    assert err.value.reason == "device or file not found"


def test_usb_copies_camera_h264_and_encodes_otherwise():
    cam = UsbCamera("usb0", "/dev/video0", input_format="h264", width=1280, height=720, fps=15)
    try:
        assert cam.main_codec_args()[:2] == ["-c:v", "copy"]
        cam.input_format, cam.encoder = "mjpeg", "libx264"
        args = cam.producer_args(input_args=["-f", "v4l2", "-i", "/dev/video0"])
        assert args[args.index("-c:v") + 1] == "libx264"
        assert "repeat-headers=1" in args  # consumers join mid-stream
        assert args[args.index("-g") + 1] == "15"
        assert cam.main_relay.ingest_url in args and cam.detect_relay.ingest_url in args
        assert "fps=5,scale=640:360,format=yuv420p" in args
        cam.encoder = "h264_v4l2m2m"
        assert "-b:v" in cam.main_codec_args()
    finally:
        cam.main_relay.close()
        cam.detect_relay.close()


def test_probed_rate_reports_the_nominal_camera_rate() -> None:
    from drivers.cameras.probe import _rate

    assert _rate("1467/100") == 15.0  # a live stream's guessed rate on a busy machine
    assert _rate("30000/1001") == 29.97
    assert _rate("25/2") == 12.5
    assert _rate("17/1") == 17.0  # unusual rates are kept as they are
    assert _rate("0/0") is None and _rate(None) is None
