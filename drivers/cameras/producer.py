"""Cameras that need a producer process: USB (ffmpeg), Pi CSI (picamera2), Jetson CSI
(GStreamer). The producer runs under `ManagedProcess` and pushes its two streams into
two `StreamRelay`s; consumers read the relays' ``tcp://127.0.0.1`` ports.

- main: H.264 in MPEG-TS (the recorder stream-copies it; MPEG-TS because it carries
  timestamps, can be joined at any packet and survives a cut);
- detect: raw frames (yuv420p, small, a few per second): the detector reads them with
  no decoding at all, which is what a Pi 4 can afford.

The producer's health is the camera's ``source`` role: bytes arriving at the main
relay are its progress; silence for `stall_after_s` restarts it.
"""

from __future__ import annotations

import subprocess
from typing import Any

from drivers.cameras.base import Camera, StreamInput, mask_credentials
from drivers.cameras.relay import StreamRelay
from drivers.managed import ManagedProcess


class ProducerCamera(Camera):
    """Base of USB/CSI cameras: subclasses say how to run the producer (`producer_args`)."""

    kind = "producer"

    def __init__(self, name: str, *, width: int, height: int, fps: int,
                 detect_size: tuple[int, int] = (640, 360), detect_fps: int = 5,
                 timeout_s: float = 10.0, backoff_cap_s: float = 30.0,
                 stall_after_s: float = 10.0) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.detect_size, self.detect_fps = detect_size, detect_fps
        dw, dh = detect_size
        self.main_relay = StreamRelay(f"{name}-main", on_data=self._on_main_data)
        self.detect_relay = StreamRelay(f"{name}-detect", unit=dw * dh * 3 // 2)
        timeout_us = int(timeout_s * 1_000_000)
        main = StreamInput(self.main_relay.url, {"f": "mpegts", "timeout": timeout_us})
        detect = StreamInput(self.detect_relay.url, {
            "f": "rawvideo", "pix_fmt": "yuv420p", "video_size": f"{dw}x{dh}",
            "framerate": detect_fps, "timeout": timeout_us})
        super().__init__(name, main, detect)
        self.process = ManagedProcess(
            f"{name}-producer", self.producer_args, on_state=self._on_state,
            stdout=subprocess.DEVNULL, stall_after_s=stall_after_s, backoff_min_s=1.0,
            backoff_cap_s=backoff_cap_s, redact=mask_credentials)

    @property
    def needs_producer(self) -> bool:
        return True

    def producer_args(self) -> list[str]:
        """The producer's command line; it writes main to `main_relay.ingest_url` and
        raw detect frames to `detect_relay.ingest_url`."""
        raise NotImplementedError

    def start(self) -> None:
        self.main_relay.start()
        self.detect_relay.start()
        self.process.start()

    def stop(self) -> None:
        self.process.stop()
        self.main_relay.stop()
        self.detect_relay.stop()

    def health(self) -> dict[str, Any]:
        return {"producer": self.process.health(), "main_relay": self.main_relay.health(),
                "detect_relay": self.detect_relay.health()}

    def _on_main_data(self, _n: int) -> None:
        self.process.beat()

    def _on_state(self, state: str, reason: str) -> None:
        self.on_source_state(state, reason)
