"""Read ffmpeg's ``-progress pipe:1`` output: frames read so far, as they happen.

A consumer ffmpeg (recorder, detection reader, the camera tests) started with
``-progress pipe:1 -stats_period 0.5`` prints blocks of ``key=value`` lines ending in
``progress=continue``. `FfmpegProgress` turns each block into a frame count delta:
the supervisor's proof of progress (`ManagedProcess.beat`) and the registry's frame
rate (`report_frames`). It is wired as `ManagedProcess(on_start=progress.attach,
stdout=subprocess.PIPE)`.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

PROGRESS_ARGS = ["-progress", "pipe:1", "-stats_period", "0.5", "-nostats"]


class FfmpegProgress:
    """Calls `on_frames(delta)` for every progress block with new frames."""

    def __init__(self, on_frames: Callable[[int], None]) -> None:
        self.on_frames = on_frames
        self.frames = 0  # of the current child
        self.total = 0  # over all children

    def attach(self, proc: subprocess.Popen) -> None:
        """Start reading `proc.stdout` (a pipe) on a thread of its own."""
        self.frames = 0
        threading.Thread(target=self._read, args=(proc,), name="ffmpeg-progress",
                         daemon=True).start()

    def _read(self, proc: subprocess.Popen) -> None:
        if proc.stdout is None:
            return
        for raw in iter(proc.stdout.readline, b""):
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key == "frame":
                try:
                    frames = int(value)
                except ValueError:
                    continue
                delta, self.frames = frames - self.frames, frames
                if delta > 0:
                    self.total += delta
                    self.on_frames(delta)
