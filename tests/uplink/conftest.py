"""Fixtures of the uplink tests: Debian's nginx (RTMP in, WebDAV PUT), sources, ffprobe."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.media_server import LocalNginx, nginx_available
from devtools.rtsp_camera import scene_h264
from uplink.live import Source


@pytest.fixture
def nginx() -> Iterator[LocalNginx]:
    """nginx from Debian on free loopback ports, unprivileged, in a temp dir."""
    why = nginx_available()
    if why:
        pytest.fail(why)
    with LocalNginx() as srv:
        yield srv


@pytest.fixture(scope="session")
def h264_source() -> Source:
    """The street scene (H.264), read in real time and looped: a stand-in camera."""
    raw = scene_h264()
    path = raw.with_suffix(".mp4")  # raw H.264 cannot be looped (no seeking): remux once
    if not path.is_file():
        part = raw.with_name(f".{raw.stem}-{os.getpid()}.mp4")
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "h264",
                        "-framerate", "15", "-i", str(raw), "-c", "copy", str(part)], check=True)
        os.replace(part, path)
    return Source(["-readrate", "1", "-stream_loop", "-1", "-i", str(path)], "h264")


@pytest.fixture(scope="session")
def h265_file() -> Path:
    """A short H.265 clip (libx265, cached), for an H.265 camera."""
    cache = Path(tempfile.gettempdir()) / "ronda-test-camera"
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / "testsrc-h265-v1.mp4"
    if not out.is_file():
        part = cache / f".testsrc-h265-{os.getpid()}.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        "testsrc2=size=320x180:rate=15", "-t", "4", "-c:v", "libx265",
                        "-preset", "ultrafast", "-x265-params", "keyint=15:log-level=error",
                        "-tag:v", "hvc1", str(part)], check=True)
        os.replace(part, out)
    return out
