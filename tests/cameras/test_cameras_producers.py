"""Producer cameras (USB, Pi CSI, Jetson CSI): a real producer process under
ManagedProcess, the relays, and real ffmpeg consumers reading main and detect.

No camera hardware here, so each producer gets a stand-in *source* and nothing else
changes: USB reads ffmpeg's testsrc2 instead of /dev/video0; the Pi producer runs
against the picamera2 test double in tests/cameras/fakes (real H.264 from libx264);
the Jetson pipeline runs with software elements in place of NVIDIA's.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from pathlib import Path

import pytest

from drivers.cameras.base import Camera, StreamInput
from drivers.cameras.jetson import SOFTWARE_ELEMENTS, JetsonCamera
from drivers.cameras.picamera import PiCamera
from drivers.cameras.probe import probe
from drivers.cameras.registry import CameraRegistry
from drivers.cameras.snapshot import grab_jpeg
from drivers.cameras.usb import UsbCamera
from tests.waiting import wait_for


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(
                    errors="replace").replace("\0", " "):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


ROOT = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fakes"
SMALL = {"width": 320, "height": 240, "fps": 10, "detect_size": (160, 120), "detect_fps": 5,
         "timeout_s": 5, "backoff_cap_s": 2}


class LavfiUsbCamera(UsbCamera):
    """A USB camera whose device is ffmpeg's test source (a raw-format camera: encoded)."""

    def input_args(self) -> list[str]:
        self.input_format = "yuyv422"
        return ["-re", "-f", "lavfi", "-i", f"testsrc2=size={self.width}x{self.height}:"
                                            f"rate={self.fps}"]


def read_detect_frames(cam: Camera, frames: int, timeout: float = 20) -> bytes:
    out = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                          *cam.detect.ffmpeg_args(), "-frames:v", str(frames), "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def check_streams(cam: Camera, kill: bool = False) -> None:
    states: queue.SimpleQueue = queue.SimpleQueue()
    registry = CameraRegistry([cam], lambda c, s, r: states.put((s, r)))
    cam.start()
    try:
        assert states.get(timeout=20) == ("online", "")  # the producer made progress
        info = probe(cam.main, timeout=10)
        assert (info.codec, info.width, info.height) == ("h264", 320, 240)
        gray = read_detect_frames(cam, 4)
        assert len(gray) == 4 * 160 * 120
        assert len(set(gray)) > 1  # a picture, not a blank frame
        health = registry.health()[cam.name]
        assert health["producer"]["state"] == "online"
        assert health["main_relay"]["bytes_in"] > 0
        if kill:  # the producer dies: the camera goes offline, then comes back by itself
            pid = cam.process.pid
            assert pid is not None
            os.kill(pid, 9)
            state, reason = states.get(timeout=10)
            assert state == "offline" and "exited with code -9" in reason
            assert states.get(timeout=20) == ("online", "")
            assert len(read_detect_frames(cam, 2)) == 2 * 160 * 120
        jpeg = grab_jpeg(cam.detect, timeout=10)
        assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    finally:
        cam.stop()
        cam.main_relay.close()
        cam.detect_relay.close()
    assert cam.process.proc is None
    # nothing left that writes into the relays (producer, FfmpegOutput's ffmpeg, gst-launch)
    for port in (cam.main_relay.ingest_port, cam.detect_relay.ingest_port):
        assert processes_mentioning(f"127.0.0.1:{port}") == []


@pytest.mark.slow
def test_usb_camera_producer_serves_main_and_detect():
    check_streams(LavfiUsbCamera("usb1", "/dev/video-test", **SMALL), kill=True)


@pytest.mark.slow
def test_picamera_producer_with_picamera2_double():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FAKES), str(ROOT)]))
    cam = PiCamera("csi0", sensor=0, python=sys.executable, env=env, **SMALL)
    args = cam.producer_args()
    assert args[1:3] == ["-m", "drivers.cameras.picamera_producer"]
    assert "--lores" in args and "160x120" in args
    check_streams(cam)


@pytest.mark.slow
def test_jetson_pipeline_runs_with_software_elements():
    cam = JetsonCamera("jet0", **SMALL).with_elements(SOFTWARE_ELEMENTS)
    check_streams(cam)


def test_jetson_pipeline_construction():
    cam = JetsonCamera("jet0", sensor=1, width=1920, height=1080, fps=30, bitrate_kbps=6000)
    try:
        text = cam.pipeline()
        args = cam.producer_args()
    finally:
        cam.main_relay.close()
        cam.detect_relay.close()
    assert args[:3] == ["gst-launch-1.0", "-q", "-e"]
    assert text.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM),"
                           "width=1920,height=1080,framerate=30/1,format=NV12 ! tee name=t ")
    assert "nvv4l2h264enc bitrate=6000000 iframeinterval=30 idrinterval=30 insert-sps-pps=true" \
        in text
    assert f"tcpclientsink host=127.0.0.1 port={cam.main_relay.ingest_port}" in text
    assert "nvvidconv ! video/x-raw,format=I420,width=640,height=360" in text
    assert text.index("mpegtsmux") < text.index(f"port={cam.main_relay.ingest_port}")
    assert text.endswith(f"port={cam.detect_relay.ingest_port} sync=false")
    assert cam.detect.options["video_size"] == "640x360"
    assert cam.detect.options["pix_fmt"] == "yuv420p"


def test_picamera2_double_follows_the_real_api(tmp_path, monkeypatch):
    """The double itself: FileOutput gets real H.264 access units, lores arrays are YUV420."""
    monkeypatch.syspath_prepend(str(FAKES))
    try:
        check_double(tmp_path)
    finally:  # leave no double behind in sys.modules for other tests
        for name in [m for m in sys.modules if m.split(".")[0] == "picamera2"]:
            del sys.modules[name]


def check_double(tmp_path: Path) -> None:
    from picamera2 import Picamera2
    from picamera2.encoders import H264Encoder
    from picamera2.outputs import FileOutput, PyavOutput

    picam2 = Picamera2(0)
    with pytest.raises(RuntimeError, match="in use"):
        Picamera2(0)
    config = picam2.create_video_configuration(main={"size": (320, 240)},
                                               lores={"size": (160, 120)},
                                               controls={"FrameRate": 10})
    picam2.configure(config)
    out = tmp_path / "main.h264"
    picam2.start_recording(H264Encoder(bitrate=1_000_000, repeat=True, iperiod=10),
                           FileOutput(str(out)))
    lores = picam2.capture_array("lores")
    assert lores.shape == (180, 160) and str(lores.dtype) == "uint8"
    wait_for(lambda: out.exists() and out.stat().st_size >= 2000, 15, "2 kB of H.264")
    picam2.stop_recording()
    picam2.close()
    assert out.read_bytes().startswith(b"\x00\x00\x00\x01\x09")  # an access unit delimiter
    info = probe(StreamInput(str(out)), timeout=5)
    assert (info.codec, info.width, info.height) == ("h264", 320, 240)
    with pytest.raises(RuntimeError):
        PyavOutput("x.mp4").start()
    Picamera2(0).close()  # closed: the sensor can be opened again
