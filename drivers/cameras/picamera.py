"""Raspberry Pi CSI cameras through picamera2 (libcamera), written for picamera2 0.3.x
(the API of Raspberry Pi OS Bookworm; 0.3.38 on PyPI as of 2026-11).

picamera2 is a Python library, not a program, and libcamera allows one user of a
sensor; so the producer is a small Python program of ours (`picamera_producer`) that
the daemon runs under `ManagedProcess` like any other producer (a crash in libcamera
takes down the producer, not the daemon). It configures two streams of one sensor:

- ``main`` (full size) goes through the hardware ``H264Encoder`` to an ``FfmpegOutput``
  muxing MPEG-TS into the main relay (``-c:v copy``: no software encoding);
- ``lores`` (small YUV420) is read with ``capture_array("lores")`` a few times a second
  and written as raw frames into the detect relay.

picamera2 is imported only in the producer (and only on a Pi): ``import picamera2``
fails elsewhere (no libcamera binding), and the daemon must not need it to start.
"""

from __future__ import annotations

import sys

from drivers.cameras.producer import ProducerCamera


class PiCamera(ProducerCamera):
    """A CSI sensor on a Raspberry Pi (`sensor` is Picamera2's camera_num)."""

    kind = "picamera"

    def __init__(self, name: str, *, sensor: int = 0, bitrate_kbps: int = 3000,
                 python: str = sys.executable, env: dict[str, str] | None = None,
                 **kwargs) -> None:
        self.sensor = sensor
        self.bitrate_kbps = bitrate_kbps
        self.python = python
        super().__init__(name, **kwargs)
        if env is not None:
            self.process.env = env

    @classmethod
    def from_settings(cls, s) -> PiCamera:  # s: CameraSettings
        return cls(s.name, sensor=s.sensor, bitrate_kbps=s.bitrate_kbps, width=s.width,
                   height=s.height, fps=s.fps, detect_size=(s.detect_width, s.detect_height),
                   detect_fps=s.detect_fps, timeout_s=s.timeout_s,
                   backoff_cap_s=s.backoff_cap_s)

    def producer_args(self) -> list[str]:
        dw, dh = self.detect_size
        return [self.python, "-m", "drivers.cameras.picamera_producer",
                "--sensor", str(self.sensor), "--size", f"{self.width}x{self.height}",
                "--fps", str(self.fps), "--bitrate", str(self.bitrate_kbps * 1000),
                "--lores", f"{dw}x{dh}", "--detect-fps", str(self.detect_fps),
                "--main", self.main_relay.ingest_url, "--detect", self.detect_relay.ingest_url]
