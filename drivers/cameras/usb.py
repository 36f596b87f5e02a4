"""USB (UVC) cameras through V4L2, with ffmpeg as the producer.

The camera's own compression is used whenever it has some: a UVC camera that sends
H.264 is stream-copied (no encoding at all); one that sends MJPEG or raw YUV has to be
encoded, with the SoC's encoder through V4L2 mem2mem (``h264_v4l2m2m``, the Pi 4's
hardware encoder) when it works, else ``libx264 -preset ultrafast`` (a Pi 4 core
manages 720p15 that way, but it is the most expensive thing the node would do).

`list_devices()` is what ``ronda cameras list`` prints: /dev/video* with the formats
and sizes each one offers (nothing, and no error, on a machine without any).
"""

from __future__ import annotations

import functools
import glob
import re
import subprocess
from dataclasses import dataclass, field

from drivers.cameras.producer import ProducerCamera

_FORMAT_LINE = re.compile(
    r"\]\s*(?P<kind>Raw|Compressed)\s*:\s*(?P<name>\S+)\s*:\s*(?P<desc>.*)\s:\s*"
    r"(?P<sizes>[^:]*)$")
PREFERENCE = ("h264", "mjpeg", "yuyv422", "nv12", "yuv420p")


@dataclass
class V4l2Format:
    """One pixel format a device offers, with its frame sizes."""

    name: str  # ffmpeg's name: h264, mjpeg, yuyv422...
    compressed: bool
    description: str
    sizes: list[str] = field(default_factory=list)


def parse_formats(ffmpeg_stderr: str) -> list[V4l2Format]:
    """Parse ``ffmpeg -f v4l2 -list_formats all -i DEV`` output."""
    formats = []
    for line in ffmpeg_stderr.splitlines():
        m = _FORMAT_LINE.search(line)
        if m:
            formats.append(V4l2Format(m["name"], m["kind"] == "Compressed", m["desc"].strip(),
                                      m["sizes"].split()))
    return formats


def device_formats(device: str, timeout: float = 5.0) -> list[V4l2Format]:
    """The formats `device` offers (empty if it is not a capture device)."""
    try:
        out = subprocess.run(["ffmpeg", "-hide_banner", "-f", "v4l2", "-list_formats", "all",
                              "-i", device], capture_output=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return parse_formats(out.stderr.decode(errors="replace"))


def list_devices(pattern: str = "/dev/video*") -> dict[str, list[V4l2Format]]:
    """Every V4L2 device and its formats; devices offering none (metadata, codec
    nodes) are listed with an empty list."""
    return {dev: device_formats(dev) for dev in sorted(glob.glob(pattern))}


@functools.cache
def hardware_encoder_works(encoder: str = "h264_v4l2m2m") -> bool:
    """Whether ffmpeg can really encode with `encoder` here (one test frame)."""
    try:
        out = subprocess.run(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
             "testsrc2=size=320x240:rate=5", "-frames:v", "3", "-pix_fmt", "yuv420p",
             "-c:v", encoder, "-f", "null", "-"], capture_output=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def choose_format(formats: list[V4l2Format]) -> str | None:
    """The input format to ask the camera for: H.264 > MJPEG > raw."""
    names = [f.name for f in formats]
    return next((p for p in PREFERENCE if p in names), names[0] if names else None)


class UsbCamera(ProducerCamera):
    """A V4L2 camera; `input_format` None means: ask the device what it has."""

    kind = "usb"

    def __init__(self, name: str, device: str, *, input_format: str | None = None,
                 encoder: str | None = None, bitrate_kbps: int = 3000, **kwargs) -> None:
        self.device = device
        self.bitrate_kbps = bitrate_kbps
        self.input_format = input_format
        self.encoder = encoder
        super().__init__(name, **kwargs)

    @classmethod
    def from_settings(cls, s) -> UsbCamera:  # s: CameraSettings (kept untyped: no import cycle)
        assert s.device is not None
        return cls(s.name, s.device, input_format=s.input_format,
                   bitrate_kbps=s.bitrate_kbps, width=s.width,
                   height=s.height, fps=s.fps, detect_size=(s.detect_width, s.detect_height),
                   detect_fps=s.detect_fps, timeout_s=s.timeout_s,
                   backoff_cap_s=s.backoff_cap_s)

    def input_args(self) -> list[str]:
        """How ffmpeg opens the device."""
        fmt = self.input_format or choose_format(device_formats(self.device)) or "mjpeg"
        self.input_format = fmt
        return ["-f", "v4l2", "-input_format", fmt, "-video_size",
                f"{self.width}x{self.height}", "-framerate", str(self.fps), "-i", self.device]

    def main_codec_args(self) -> list[str]:
        """Copy the camera's H.264; otherwise encode (hardware if it works)."""
        if self.input_format == "h264":
            return ["-c:v", "copy", "-bsf:v", "dump_extra=freq=keyframe"]
        encoder = self.encoder or ("h264_v4l2m2m" if hardware_encoder_works() else "libx264")
        self.encoder = encoder
        gop = ["-g", str(self.fps)]
        if encoder == "libx264":
            return ["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast",
                    "-tune", "zerolatency", *gop, "-x264-params", "repeat-headers=1"]
        return ["-pix_fmt", "yuv420p", "-c:v", encoder, "-b:v", f"{self.bitrate_kbps}k", *gop]

    def producer_args(self, input_args: list[str] | None = None) -> list[str]:
        """One ffmpeg: the device in, main (H.264/MPEG-TS) and detect (raw) out."""
        dw, dh = self.detect_size
        inputs = input_args if input_args is not None else self.input_args()
        return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *inputs,
                "-map", "0:v", *self.main_codec_args(), "-an", "-f", "mpegts",
                self.main_relay.ingest_url,
                "-map", "0:v", "-vf", f"fps={self.detect_fps},scale={dw}:{dh},format=yuv420p",
                "-c:v", "rawvideo", "-an", "-f", "rawvideo", self.detect_relay.ingest_url]
