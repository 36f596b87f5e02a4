"""Decoded frames of a camera's detect stream, straight from ffmpeg into numpy.

ffmpeg decodes, drops to `fps` and scales to the detect size, and writes raw YUV 4:2:0
(I420) to a pipe: 1.5 bytes a pixel instead of 3 for RGB, and its Y plane is the grey
image motion and tamper need, for free. A pump thread reads each frame with `readinto`
straight into one of a few preallocated buffers (no per-frame allocation, no copy) and
hands it over through a `FramePool`. The child runs under `ManagedProcess`: one beat per
frame, restarted with backoff when it exits or stalls.

Hardware decoding (`hwaccel`): ``v4l2m2m`` uses the Raspberry Pi 4's H.264 decoder
(`-c:v h264_v4l2m2m`; the Pi 5 has no H.264 decoder block, software is used there),
``jetson`` the Jetson's NVDEC through JetPack's ffmpeg (`-c:v h264_nvv4l2dec`), ``vaapi``
Intel/AMD graphics, ``auto`` picks by board (device tree model), ``none`` decodes on the CPU.
When a hardware decoder gives no frame twice in a row, the reader falls back to software.

`ready` (the camera's `reachable`, a TCP connect) cuts the restart backoff short when the
camera was seen down and is back: decoding resumes within a second or two of its return.

Example::

    reader = FrameReader("cam1", StreamInput("rtsp://cam/sub"), 640, 360, fps=5)
    reader.start()
    frame = reader.pool.get(timeout=1.0)   # Frame with .yuv (H*3/2 x W uint8)
    ...
    reader.pool.release(frame)
"""

from __future__ import annotations

import collections
import io
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivers.cameras.base import StreamInput, mask_credentials
from drivers.managed import ManagedProcess

log = logging.getLogger(__name__)

HWACCEL_ARGS: dict[str, list[str]] = {
    "none": [],
    "v4l2m2m": ["-c:v", "h264_v4l2m2m"],
    "jetson": ["-c:v", "h264_nvv4l2dec"],
    "vaapi": ["-hwaccel", "vaapi"],
    "cuda": ["-hwaccel", "cuda"],
}


def board_hwaccel(model_file: Path = Path("/proc/device-tree/model")) -> str:
    """The `hwaccel` preset that suits this board (what `auto` means)."""
    try:
        model = model_file.read_bytes().decode(errors="replace")
    except OSError:
        return "none"
    if "Raspberry Pi 4" in model or "Raspberry Pi Compute Module 4" in model:
        return "v4l2m2m"
    if "Jetson" in model or "NVIDIA" in model:
        return "jetson"
    return "none"


def input_args(source: StreamInput) -> list[str]:
    """ffmpeg input options from a StreamInput (`None`/`True` values are bare flags)."""
    return source.option_args()


def ffmpeg_args(source: StreamInput, width: int, height: int, fps: float,
                hwaccel: str = "none") -> list[str]:
    """The decoder command: raw I420 frames of `width` x `height` at `fps` on stdout."""
    accel = board_hwaccel() if hwaccel == "auto" else hwaccel
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        *HWACCEL_ARGS.get(accel, []), *input_args(source), "-i", source.url,
        "-an", "-sn", "-dn",
        "-vf", f"fps={fps:g},scale={width}:{height}:flags=fast_bilinear",
        "-pix_fmt", "yuv420p", "-f", "rawvideo", "pipe:1",
    ]


@dataclass
class Frame:
    """One decoded frame. `yuv` belongs to the pool: release it when done."""

    seq: int
    ts: float  # wall clock when it was read
    yuv: np.ndarray  # (height * 3 // 2, width) uint8, I420 layout
    width: int
    height: int
    mono: float | None = None  # monotonic clock when read (durations); stream time for files

    @property
    def grey(self) -> np.ndarray:
        """The Y plane (a view, no copy)."""
        return self.yuv[: self.height]


class FramePool:
    """A few preallocated frame buffers passed between one reader and one consumer.

    With `drop_when_full` (live cameras) the reader reuses the oldest unread frame when
    the consumer is behind, so the consumer always gets recent frames; without it (files,
    benches) the reader waits, which makes ffmpeg wait: every frame is processed.
    """

    def __init__(self, width: int, height: int, count: int = 3,
                 drop_when_full: bool = True) -> None:
        self.width, self.height = width, height
        self.frame_bytes = width * height * 3 // 2
        self._free = collections.deque(
            np.empty((height * 3 // 2, width), np.uint8) for _ in range(count))
        self._ready: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self.drop_when_full = drop_when_full
        self.dropped = 0

    def acquire(self, timeout: float) -> np.ndarray | None:
        """A buffer to fill (reader side); None when none frees up within `timeout`."""
        with self._cond:
            deadline = time.monotonic() + timeout
            while not self._free:
                if self.drop_when_full and self._ready:
                    self.dropped += 1
                    return self._ready.popleft().yuv
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._free.popleft()

    def put(self, frame: Frame) -> None:
        """A filled frame is ready (reader side)."""
        with self._cond:
            self._ready.append(frame)
            self._cond.notify_all()

    def give_back(self, buf: np.ndarray) -> None:
        """Return an unfilled buffer (reader side, on end of stream)."""
        with self._cond:
            self._free.append(buf)
            self._cond.notify_all()

    def get(self, timeout: float = 0.0) -> Frame | None:
        """The oldest ready frame (consumer side), or None."""
        with self._cond:
            if not self._ready and timeout > 0:
                self._cond.wait(timeout)
            return self._ready.popleft() if self._ready else None

    def release(self, frame: Frame) -> None:
        """The consumer is done with `frame`; its buffer can be refilled."""
        with self._cond:
            self._free.append(frame.yuv)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._ready)


class FrameReader:
    """Decode one stream into a `FramePool`, kept alive by a `ManagedProcess`."""

    def __init__(self, name: str, source: StreamInput, width: int, height: int, *,
                 fps: float = 5.0, hwaccel: str = "none", buffers: int = 3,
                 drop_when_full: bool = True, stream_clock: bool = False,
                 on_state: Callable[[str, str], None] | None = None,
                 on_frame: Callable[[], None] | None = None,
                 stall_after_s: float = 20.0, restart_delay_s: float = 1.0,
                 ready: Callable[[], bool | None] | None = None) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"detect size must be even, got {width}x{height}")
        self.name = name
        self.source = source
        self.width, self.height, self.fps = width, height, fps
        self.pool = FramePool(width, height, buffers, drop_when_full)
        # stream_clock: time frames by their place in the stream (seq / fps after the start),
        # for files decoded faster than real time (tests, benches); else the wall clock
        self.stream_clock = stream_clock
        self._t0 = time.time()
        self._on_frame = on_frame or (lambda: None)
        self.frames = 0
        self.streams_ended = 0  # how many times the child's output ended
        self.hwaccel = board_hwaccel() if hwaccel == "auto" else hwaccel
        self.decoder = self.hwaccel  # what the current child uses
        self._launches = 0
        self._frames_at_launch = 0
        self._failed_launches = 0
        self.process = ManagedProcess(
            f"{name}-decode", self._make_args,
            on_state=on_state, on_start=self._on_start, stdout=subprocess.PIPE,
            stall_after_s=stall_after_s, backoff_min_s=restart_delay_s,
            redact=mask_credentials, ready=ready,
        )
        self._pump_thread: threading.Thread | None = None
        self._stopped = False

    def start(self) -> None:
        self._stopped = False
        self.process.start()

    def _make_args(self) -> list[str]:
        """The next child's command; after two hardware-decoded starts that gave no frame
        (no device, unsupported codec), decode in software instead."""
        if self._launches and self.frames == self._frames_at_launch:
            self._failed_launches += 1
        else:
            self._failed_launches = 0
        self._launches += 1
        self._frames_at_launch = self.frames
        if self.hwaccel != "none" and self._failed_launches >= 2 and self.decoder != "none":
            log.warning("%s: hardware decoding (%s) gives no frames; decoding in software",
                        self.name, self.hwaccel)
            self.decoder = "none"
        return ffmpeg_args(self.source, self.width, self.height, self.fps, self.decoder)

    def stop(self) -> None:
        self._stopped = True
        self.process.stop()
        if self._pump_thread is not None:
            self._pump_thread.join(5)

    def _on_start(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        # Read from our own copy of the pipe: ManagedProcess closes proc.stdout as soon as
        # the child exits, and the frames still in the pipe (the end of a file) would be lost.
        pipe = os.fdopen(os.dup(proc.stdout.fileno()), "rb", buffering=0)
        previous = self._pump_thread
        if previous is not None:  # the last child's frames first, never interleaved
            previous.join(5)
        self._pump_thread = threading.Thread(target=self._pump, args=(pipe,),
                                             name=f"{self.name}-frames", daemon=True)
        self._pump_thread.start()

    def _pump(self, pipe: io.RawIOBase) -> None:
        size = self.pool.frame_bytes
        with pipe:
            while not self._stopped:
                buf = None
                while buf is None and not self._stopped:
                    buf = self.pool.acquire(timeout=0.5)
                if buf is None:
                    break
                view = memoryview(buf.reshape(-1))
                got = 0
                try:
                    while got < size:
                        n = pipe.readinto(view[got:])
                        if not n:
                            break
                        got += n
                except (OSError, ValueError):
                    got = -1
                if got != size:  # end of stream (or a torn last frame)
                    self.pool.give_back(buf)
                    break
                self.frames += 1
                if self.stream_clock:
                    ts = mono = self._t0 + self.frames / self.fps
                else:
                    ts, mono = time.time(), time.monotonic()
                self.pool.put(Frame(self.frames, ts, buf, self.width, self.height, mono))
                self.process.beat()
                self._on_frame()
        self.streams_ended += 1


def decode_file(path: Path, width: int, height: int, fps: float, *,
                timeout: float = 60.0) -> list[tuple[float, np.ndarray]]:
    """Every frame of a video file through a real `FrameReader`, as (stream time, I420
    copy) pairs: for `ronda detect` on a clip, tests and benches, not for live cameras."""
    reader = FrameReader(path.stem, StreamInput(str(path)), width, height, fps=fps,
                         drop_when_full=False, stream_clock=True, restart_delay_s=600)
    reader.start()
    frames = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not (reader.streams_ended
                                                   and not reader.pool.pending()):
            frame = reader.pool.get(timeout=0.2)
            if frame is not None:
                frames.append((frame.ts, frame.yuv.copy()))
                reader.pool.release(frame)
    finally:
        reader.stop()
    return frames
