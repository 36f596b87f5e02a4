"""The Pi CSI producer process: ``python -m drivers.cameras.picamera_producer ...``.

Runs picamera2 on one sensor: the ``main`` stream through the hardware H264Encoder
into an FfmpegOutput that muxes MPEG-TS to the main relay, and the ``lores`` stream
read with ``capture_array("lores")`` at ``--detect-fps`` and written as raw YUV420
frames to the detect relay. Exits (non-zero) on any error: `ManagedProcess` restarts
it with backoff.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading
import time


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def _hostport(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sensor", type=int, default=0)
    p.add_argument("--size", type=_size, default=(1280, 720))
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--bitrate", type=int, default=3_000_000)
    p.add_argument("--lores", type=_size, default=(640, 360))
    p.add_argument("--detect-fps", type=float, default=5.0)
    p.add_argument("--main", required=True, help="tcp://127.0.0.1:PORT of the main relay")
    p.add_argument("--detect", required=True, help="tcp://127.0.0.1:PORT of the detect relay")
    opts = p.parse_args(argv)

    from picamera2 import Picamera2
    from picamera2.encoders import H264Encoder
    from picamera2.outputs import FfmpegOutput

    stop, failed = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    picam2 = Picamera2(opts.sensor)
    config = picam2.create_video_configuration(
        main={"size": opts.size, "format": "YUV420"},
        lores={"size": opts.lores, "format": "YUV420"},
        controls={"FrameRate": opts.fps})
    picam2.configure(config)
    # repeat: SPS/PPS before every keyframe (consumers join mid-stream); iperiod: GOP
    encoder = H264Encoder(bitrate=opts.bitrate, repeat=True, iperiod=opts.fps)
    output = FfmpegOutput(f"-f mpegts {opts.main}")
    output.error_callback = lambda exc: (print(f"main relay: {exc}", file=sys.stderr),
                                         failed.set(), stop.set())
    detect = socket.create_connection(_hostport(opts.detect), timeout=10)
    detect.settimeout(10)
    picam2.start_recording(encoder, output)
    period = 1.0 / opts.detect_fps
    try:
        next_at = time.monotonic()
        while not stop.is_set():
            frame = picam2.capture_array("lores")  # YUV420: (h * 3 / 2, w) uint8
            detect.sendall(frame.tobytes())
            next_at += period
            stop.wait(max(0.0, next_at - time.monotonic()))
    except OSError as exc:
        print(f"detect relay: {exc}", file=sys.stderr)
        return 1
    finally:
        picam2.stop_recording()
        picam2.close()
        detect.close()
    return 1 if failed.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
