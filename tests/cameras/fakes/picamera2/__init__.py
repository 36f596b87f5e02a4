"""A test double of picamera2 (0.3.x API) for machines without a Pi camera.

It follows the real signatures the producer uses: ``Picamera2(camera_num)``,
``create_video_configuration(main=..., lores=..., controls=...)``, ``configure``,
``start_recording(encoder, output)``, ``capture_array("lores")``, ``stop_recording``,
``close``. The "sensor" is ffmpeg's testsrc2: the H264Encoder double really encodes it
(libx264) and hands one access unit per frame to the output's ``outputframe``, as the
hardware encoder does; ``capture_array("lores")`` returns a YUV420 array of the lores
size, shaped (h * 3 / 2, w) like the real one.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["Picamera2"]
OPENED: set[int] = set()


class Picamera2:
    def __init__(self, camera_num: int = 0) -> None:
        if camera_num in OPENED:
            raise RuntimeError(f"Camera __init__ sequence did not complete (camera {camera_num} "
                               "in use)")
        OPENED.add(camera_num)
        self.camera_num = camera_num
        self.camera_config: dict | None = None
        self.encoder = None
        self.started = False
        self._t0 = time.monotonic()

    def create_video_configuration(self, main: dict | None = None, lores: dict | None = None,
                                   raw: dict | None = None, transform=None, colour_space=None,
                                   buffer_count: int = 6, controls: dict | None = None,
                                   display: str | None = "main", encode: str | None = "main",
                                   queue: bool = True, sensor: dict | None = None,
                                   use_case: str = "video") -> dict:
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        if lores is not None:
            lores = {"format": "YUV420", **lores}
        return {"use_case": use_case, "main": main, "lores": lores,
                "controls": {"FrameRate": 30, **(controls or {})}, "encode": encode}

    def configure(self, camera_config: dict) -> None:
        self.camera_config = camera_config

    def start(self) -> None:
        if self.camera_config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True

    def start_recording(self, encoder, output, pts=None, config=None, quality=None,
                        name=None) -> None:
        if config is not None:
            self.configure(config)
        self.start()
        encoder.output = output
        output.start()
        encoder.start_fake(self.camera_config)
        self.encoder = encoder

    def capture_array(self, name: str = "main") -> np.ndarray:
        assert self.started and self.camera_config is not None
        stream = self.camera_config[name]
        if stream is None:
            raise RuntimeError(f"stream {name} is not configured")
        w, h = stream["size"]
        time.sleep(1 / self.camera_config["controls"]["FrameRate"])  # waits for a frame
        frame = np.full((h * 3 // 2, w), 128, dtype=np.uint8)
        x = int((time.monotonic() - self._t0) * 40) % w  # a bar moving across
        frame[:h, max(0, x - 8):x + 8] = 235
        return frame

    def stop_recording(self) -> None:
        if self.encoder is not None:
            self.encoder.stop()
            self.encoder.output.stop()
            self.encoder = None
        self.started = False

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        OPENED.discard(self.camera_num)
