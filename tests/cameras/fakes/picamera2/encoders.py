"""Test double of picamera2.encoders: H264Encoder, really encoding testsrc2 with libx264."""

from __future__ import annotations

import subprocess
import threading

AUD = b"\x00\x00\x00\x01\x09"


class Encoder:
    def __init__(self) -> None:
        self.output = None
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None


class H264Encoder(Encoder):
    def __init__(self, bitrate=None, repeat: bool = False, iperiod=None, framerate=None,
                 enable_sps_framerate: bool = False, qp=None, profile=None) -> None:
        super().__init__()
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod

    def start_fake(self, config: dict) -> None:
        w, h = config["main"]["size"]
        fps = int(config["controls"]["FrameRate"])
        gop = self.iperiod or fps
        args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i",
                f"testsrc2=size={w}x{h}:rate={fps}", "-c:v", "libx264", "-preset",
                "ultrafast", "-tune", "zerolatency", "-g", str(gop), "-x264-params",
                f"aud=1:repeat-headers={int(self.repeat)}", "-f", "h264", "-"]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        pending = b""
        for chunk in iter(lambda: self._proc.stdout.read1(65536), b""):
            pending += chunk
            while True:
                end = pending.find(AUD, len(AUD))
                if end == -1:
                    break
                frame, pending = pending[:end], pending[end:]
                keyframe = any((frame[i + 3] & 0x1F) == 5 for i in range(len(frame) - 4)
                               if frame[i:i + 3] == b"\x00\x00\x01")
                self.output.outputframe(frame, keyframe)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
            self._proc = None
