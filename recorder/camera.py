"""One camera's recording: an ffmpeg that stream-copies the main stream into fragmented
MP4 segments in the camera's ``.incoming`` directory, and a reader of its stdout.

ffmpeg writes two things to stdout: the segment list (``-segment_list pipe:1``, CSV, one
line per *closed* segment, written after the segment's trailer) and progress blocks
(``-progress pipe:1``, ``frame=...`` lines). A list line is the "segment closed" signal:
the file is committed to the store and the ManagedProcess gets a beat.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ffmpeg

from drivers.cameras.base import StreamInput, mask_credentials
from drivers.managed import ManagedProcess
from recorder.index import Segment
from recorder.store import SUFFIX, Store

log = logging.getLogger(__name__)

#: Fragmented MP4: every fragment starts at a keyframe and carries its own index, so a
#: file cut short by kill -9 or power loss still plays up to the cut.
FRAGMENTED_MP4 = "movflags=+frag_keyframe+empty_moov+default_base_moof"


def record_args(source: StreamInput, pattern: Path, segment_s: float) -> list[str]:
    """The ffmpeg command line recording `source` into segments named `pattern`."""
    stream = ffmpeg.input(source.url, **source.options).output(
        str(pattern), map="0:v:0", c="copy", an=None, f="segment",
        segment_time=f"{segment_s:g}", segment_format="mp4",
        segment_format_options=FRAGMENTED_MP4, reset_timestamps=1,
        segment_list="pipe:1", segment_list_type="csv")
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats",
            "-progress", "pipe:1", "-stats_period", "2", *stream.get_args()]


class CameraRecorder:
    """Records one camera for as long as it is started; restarted with backoff by
    ManagedProcess when ffmpeg exits or no segment closes for `stall_after_s`, capped at
    `backoff_cap_s`. `ready()` (the camera's cheap reachability check) cuts the backoff
    short when a camera that was down answers again."""

    def __init__(
        self,
        name: str,
        source: StreamInput,
        store: Store,
        segment_s: float,
        *,
        on_segment: Callable[[str, Segment], None],
        on_state: Callable[[str, str, str], None],
        on_frames: Callable[[str, int], None] | None = None,
        on_error: Callable[[str, BaseException], None],
        backoff_cap_s: float = 30.0,
        ready: Callable[[], bool | None] | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.store = store
        self.segment_s = segment_s
        self._on_segment = on_segment
        self._on_state = on_state
        self._on_frames = on_frames
        self._on_error = on_error
        self.run_id = ""
        self.last_segment_at: float | None = None  # monotonic
        self.last_segment: Segment | None = None
        self.sizes: list[int] = []
        self.segments = 0
        self._offset: float | None = None
        self._frames = 0
        self._reader: threading.Thread | None = None
        self.process = ManagedProcess(
            f"rec:{name}", self._make_args, on_state=self._state, on_start=self._started,
            stall_after_s=max(2 * segment_s, 5.0), backoff_cap_s=backoff_cap_s,
            stdout=subprocess.PIPE, redact=mask_credentials, ready=ready)

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        """Stop ffmpeg and wait for its last segment to be committed."""
        self.process.stop()
        reader = self._reader
        if reader is not None:
            reader.join(5.0)

    def headroom(self) -> int:
        """Bytes to keep free for this camera's open segment."""
        if not self.sizes:
            return 0
        return int(max(self.sizes) * 1.25)

    # -- ManagedProcess hooks (its thread) ------------------------------------------------
    def _make_args(self) -> list[str]:
        # The previous ffmpeg (if any) is dead: settle what it left before starting anew.
        previous = self._reader
        if previous is not None:  # let it commit what the dead ffmpeg closed
            previous.join(5.0)
        incoming = self.store.incoming(self.name)
        try:
            # Never parents=True: a vanished disk must not be re-created on the SD card.
            self.store.check()
            incoming.parent.mkdir(exist_ok=True)
            incoming.mkdir(exist_ok=True)
            self._report_sweep(self.store.sweep_incoming(self.name))
        except Exception as exc:
            self._on_error(self.name, exc)
            raise OSError(f"store not writable: {exc}") from exc
        self.run_id = f"{int(time.time() * 1000):x}"
        self._offset = None
        self._frames = 0
        return record_args(self.source, incoming / f"{self.run_id}-%06d{SUFFIX}",
                           self.segment_s)

    def _report_sweep(self, counts: dict[str, int]) -> None:
        if counts["recovered"] or counts["removed"]:
            log.info("%s: after ffmpeg restart, recovered %d and removed %d partial "
                     "segment(s)", self.name, counts["recovered"], counts["removed"])

    def _state(self, state: str, reason: str) -> None:
        self._on_state(self.name, state, reason)

    def _started(self, proc: subprocess.Popen) -> None:
        self._reader = threading.Thread(target=self._read, args=(proc,),
                                        name=f"rec-out:{self.name}", daemon=True)
        self._reader.start()

    # -- stdout reader ----------------------------------------------------------------
    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        incoming = self.store.incoming(self.name)
        try:
            for raw in iter(proc.stdout.readline, b""):
                self._line(incoming, raw.decode(errors="replace").strip())
        except (ValueError, OSError):
            pass  # ManagedProcess closed the pipe: ffmpeg is gone; leftovers are swept

    def _line(self, incoming: Path, line: str) -> None:
        """One stdout line: a progress field or a closed segment (name,start,end)."""
        if line.startswith("frame="):
            self._progress(line)
        elif line.count(",") == 2 and line.endswith(tuple("0123456789")):
            name, start_s, end_s = line.split(",")
            try:
                start, end = float(start_s), float(end_s)
            except ValueError:
                log.warning("%s: odd segment list line %r", self.name, line)
                return
            self._closed(incoming / name, start, end)

    def _progress(self, line: str) -> None:
        try:
            frames = int(line.split("=", 1)[1])
        except ValueError:
            return
        delta, self._frames = frames - self._frames, frames
        if delta > 0 and self._on_frames is not None:
            self._on_frames(self.name, delta)

    def _closed(self, path: Path, start_s: float, end_s: float) -> None:
        """A segment closed: stream times -> wall clock, commit, beat."""
        now = time.time()
        offset = now - end_s  # the list line is written as the segment closes
        if self._offset is None or abs(offset - self._offset) > 1.0:
            self._offset = offset
        start, end = self._offset + start_s, self._offset + end_s
        if not path.exists():  # already swept up after a restart: nothing to do
            log.warning("%s: closed segment %s is gone", self.name, path.name)
            return
        try:
            segment = self.store.commit(self.name, path, start, end)
        except Exception as exc:
            self._on_error(self.name, exc)
            return
        self.last_segment = segment
        self.last_segment_at = time.monotonic()
        self.segments += 1
        self.sizes = [*self.sizes[-4:], segment.bytes]
        self.process.beat()
        self._on_segment(self.name, segment)
