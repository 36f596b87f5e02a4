"""`ronda cameras ...` and the V4L2 format parsing behind `list`."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

from drivers.cameras.usb import choose_format, list_devices, parse_formats
from firmware.cli import main

# What ffmpeg 5.1 prints for a common UVC camera (`-f v4l2 -list_formats all`).
LOGITECH = """\
[video4linux2,v4l2 @ 0x55d0c8a3b8c0] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480 160x120 320x240 1280x720
[video4linux2,v4l2 @ 0x55d0c8a3b8c0] Compressed:       mjpeg :          Motion-JPEG : 640x480 1280x720 1920x1080
[video4linux2,v4l2 @ 0x55d0c8a3b8c0] Compressed:        h264 :                H.264 : 640x480 1920x1080
/dev/video0: Immediate exit requested
"""  # noqa: E501


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """`main()` points the root logger at the (captured) stderr of the moment: undo it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_parse_formats_and_preference():
    formats = parse_formats(LOGITECH)
    assert [f.name for f in formats] == ["yuyv422", "mjpeg", "h264"]
    assert formats[1].compressed and not formats[0].compressed
    assert formats[2].sizes == ["640x480", "1920x1080"]
    assert formats[0].description == "YUYV 4:2:2"
    assert choose_format(formats) == "h264"
    assert choose_format(formats[:2]) == "mjpeg"
    assert choose_format([]) is None


def test_list_without_devices_is_graceful(tmp_path, capsys):
    assert list_devices(str(tmp_path / "video*")) == {}
    # a file that is not a V4L2 device is listed with no formats, no crash
    (tmp_path / "video9").write_text("")
    assert list_devices(str(tmp_path / "video*")) == {str(tmp_path / "video9"): []}
    assert main(["cameras", "list", "--json"]) == 0
    assert capsys.readouterr().out.strip().startswith("{")


def test_probe_command_masks_password_and_says_why(rtsp_camera, capsys):
    assert main(["cameras", "probe", rtsp_camera.plain_url]) == 0
    assert "h264 640x360 15 fps, no audio track" in capsys.readouterr().out
    assert main(["cameras", "probe", "rtsp://admin:hunter2@127.0.0.1:1/cam",
                 "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "connection refused" in out and "hunter2" not in out


def test_probe_command_says_whether_the_audio_is_recorded(tmp_path, capsys):
    import tomli_w

    from devtools.rtsp_camera import RtspTestCamera

    with RtspTestCamera(audio="pcma", seconds=4) as cam:
        assert main(["cameras", "probe", cam.url]) == 0
        assert "audio pcm_alaw 8 kHz (recorded as AAC when" in capsys.readouterr().out
        cfg = tmp_path / "ronda.toml"
        cfg.write_text(tomli_w.dumps({
            "node": {"id": "n1", "data_dir": str(tmp_path)},
            "cameras": [{"name": "gate", "url": cam.url, "audio": False}]}))
        assert main(["cameras", "probe", "--config", str(cfg)]) == 0
        assert ("gate main: h264 640x360 15 fps, audio pcm_alaw 8 kHz: not recorded "
                "(audio = false in the camera's config)") in capsys.readouterr().out


def test_help_teaches_with_examples():
    out = subprocess.run([sys.executable, "-m", "firmware", "cameras", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "examples:" in out and "ronda cameras list" in out


def test_snapshot_command_writes_a_jpeg(tmp_path, rtsp_camera, capsys):
    import tomli_w

    cfg = tmp_path / "ronda.toml"
    cfg.write_text(tomli_w.dumps({
        "node": {"id": "test-node", "data_dir": str(tmp_path)},
        "cameras": [{"name": "gate", "url": rtsp_camera.plain_url, "timeout_s": 3,
                     "detect_fps": 5, "input_format": "mjpeg"}]}))
    out = tmp_path / "gate.jpg"
    assert main(["cameras", "snapshot", "-c", str(cfg), "gate", "-o", str(out)]) == 0
    assert out.read_bytes()[:2] == b"\xff\xd8"
    assert main(["cameras", "snapshot", "-c", str(cfg), "nope", "-o", str(out)]) == 2
    assert "no camera 'nope'" in capsys.readouterr().err
