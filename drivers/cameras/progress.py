"""Read ffmpeg's ``-progress pipe:1`` output: frames read so far, as they happen.

A consumer ffmpeg (recorder, export, the camera tests) started with ``-progress pipe:1``
prints blocks of ``key=value`` lines, each ending in ``progress=continue`` (or ``=end``).
`ProgressParser` is the one reader of that format in the project: feed it stdout lines and
it hands back each finished block, with the frame count turned into a delta. The recorder
feeds it the lines of a stdout it shares with the segment list; `FfmpegProgress` reads a
child's stdout on a thread of its own and calls `on_frames(delta)`, wired as
``ManagedProcess(on_start=progress.attach, stdout=subprocess.PIPE)``.

>>> p = ProgressParser()
>>> [p.feed(line) for line in ("frame=30", "out_time_us=2000000", "progress=continue")][-1]
{'frame': '30', 'out_time_us': '2000000', 'progress': 'continue', 'new_frames': 30}
>>> p.feed("frame=45"), p.feed("progress=continue")["new_frames"]
(None, 15)
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

PROGRESS_ARGS = ["-progress", "pipe:1", "-stats_period", "0.5", "-nostats"]


class ProgressParser:
    """Collects ``key=value`` lines into blocks; `feed` returns a block when it ends."""

    def __init__(self) -> None:
        self.frames = 0  # frames of the current child so far
        self._block: dict[str, str] = {}

    def reset(self) -> None:
        """A new child: its frame count starts at 0 again."""
        self.frames = 0
        self._block = {}

    def feed(self, line: str) -> dict | None:
        """One stdout line; the finished block (with ``new_frames``) at ``progress=``."""
        key, sep, value = line.strip().partition("=")
        if not sep:
            return None
        self._block[key] = value
        if key != "progress":
            return None
        block: dict = self._block
        self._block = {}
        try:
            frames = int(block.get("frame", self.frames))
        except ValueError:
            frames = self.frames
        block["new_frames"] = max(frames - self.frames, 0)
        self.frames = max(frames, self.frames)
        return block


class FfmpegProgress:
    """Calls `on_frames(delta)` for every progress block with new frames."""

    def __init__(self, on_frames: Callable[[int], None]) -> None:
        self.on_frames = on_frames
        self.total = 0  # over all children
        self._parser = ProgressParser()

    @property
    def frames(self) -> int:
        """Frames of the current child."""
        return self._parser.frames

    def attach(self, proc: subprocess.Popen) -> None:
        """Start reading `proc.stdout` (a pipe) on a thread of its own."""
        parser = self._parser = ProgressParser()
        threading.Thread(target=self._read, args=(proc, parser), name="ffmpeg-progress",
                         daemon=True).start()

    def _read(self, proc: subprocess.Popen, parser: ProgressParser) -> None:
        if proc.stdout is None:
            return
        for raw in iter(proc.stdout.readline, b""):
            block = parser.feed(raw.decode(errors="replace"))
            if block and block["new_frames"]:
                self.total += block["new_frames"]
                self.on_frames(block["new_frames"])
