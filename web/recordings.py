"""Read-only access to the recordings store for the page: timelines, playback streams,
single frames and downloads, all by stream copy through the recorder's own export path.

The index is opened read-only for each request (WAL lets the recorder keep writing). A
store that is missing, unreadable or of another schema raises `Unavailable`, which the
page shows as a clear message instead of an error.
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from drivers.process import spawn, terminate
from recorder.export import ExportError, ExportPlan, export, pinned, plan
from recorder.index import Index, IndexError_
from recorder.store import MARKER

#: Gaps shorter than this between segments are not gaps (segment edges are not exact).
JOIN_S = 1.5
MAX_TIMELINE_S = 2 * 86400


class Unavailable(Exception):
    """The recordings cannot be read now; the message says why, for a person."""


@contextlib.contextmanager
def open_index(root: Path) -> Iterator[Index]:
    if not (root / MARKER).is_file() or not (root / Index.FILENAME).is_file():
        raise Unavailable("the recordings disk is not there (missing or not mounted)")
    try:
        index = Index(root / Index.FILENAME, readonly=True)
    except (sqlite3.Error, IndexError_, OSError) as exc:
        raise Unavailable(f"the recordings index cannot be read: {exc}") from None
    try:
        yield index
    except sqlite3.Error as exc:
        raise Unavailable(f"the recordings index cannot be read: {exc}") from None
    finally:
        index.close()


def spans(root: Path, camera: str, start: float, end: float) -> list[tuple[float, float]]:
    """Where `camera` has footage in [start, end): merged ranges; the rest are gaps."""
    out: list[list[float]] = []
    with open_index(root) as index:
        for seg in index.segments(camera, start, end):
            s, e = max(seg.start, start), min(seg.end, end)
            if out and s - out[-1][1] <= JOIN_S:
                out[-1][1] = max(out[-1][1], e)
            else:
                out.append([s, e])
    return [(round(s, 3), round(e, 3)) for s, e in out]


def clips(root: Path, camera: str, start: float, end: float) -> list[dict]:
    """Protected ranges (alarms, detections) covering `camera` in [start, end)."""
    with open_index(root) as index:
        return [{"id": c.event_id, "start": c.start, "end": c.end} for c in index.clips()
                if c.start < end and c.end > start and (not c.cameras or camera in c.cameras)]


def oldest(root: Path) -> dict[str, float]:
    """The oldest footage per camera (epoch s)."""
    with open_index(root) as index:
        return index.oldest_by_camera()


def cameras(root: Path) -> list[str]:
    with open_index(root) as index:
        return index.cameras()


def _concat(paths: list[Path]) -> str:
    lines = ["ffconcat version 1.0"]
    lines += ["file '" + str(p.resolve()).replace("'", "'\\''") + "'" for p in paths]
    return "\n".join(lines) + "\n"


class PlaybackStream:
    """Footage of one camera from `at`, across segments, as one fragmented MP4 on a pipe.

    Stream copy (ffmpeg's concat demuxer, as export does), so it starts at the keyframe at
    or before `at`; `start` is the time the stream's zero stands for (the segment start
    plus the seek, exact to a keyframe). Iterate for the bytes; `close()` always.
    """

    def __init__(self, root: Path, camera: str, at: float, length_s: float = 3600.0) -> None:
        with open_index(root) as index:
            self.plan = plan(index, camera, at, at + length_s)
        if not self.plan.segments:
            raise LookupError("no footage at that time")
        first = self.plan.segments[0]
        self.offset = max(0.0, at - first.start)
        self.start = first.start + self.offset
        self._stack = contextlib.ExitStack()
        paths = self._stack.enter_context(pinned(root, self.plan.segments))
        tmp = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="ronda-play-"))
        listing = Path(tmp) / "segments.ffconcat"
        listing.write_text(_concat(paths))
        self.proc = spawn(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-f", "concat",
             "-safe", "0", "-ss", f"{self.offset:.3f}", "-i", str(listing), "-map", "0:v:0",
             "-c", "copy", "-avoid_negative_ts", "make_zero", "-f", "mp4", "-movflags",
             "frag_keyframe+empty_moov+default_base_moof", "pipe:1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def read(self, size: int = 256 * 1024) -> bytes:
        assert self.proc.stdout is not None
        return self.proc.stdout.read1(size)  # type: ignore[attr-defined]

    def close(self) -> None:
        terminate(self.proc, timeout=1.0)
        self._stack.close()


def frame_jpeg(root: Path, camera: str, at: float, width: int = 320) -> bytes | None:
    """One picture of the recording at `at` (the keyframe before it), scaled to `width`."""
    with open_index(root) as index:
        segs = index.segments(camera, at, at + 0.001) or index.segments(camera, at, at + 30)
    if not segs:
        return None
    seg = segs[0]
    offset = max(0.0, at - seg.start)
    with pinned(root, [seg]) as paths:
        proc = spawn(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                      "-ss", f"{offset:.3f}", "-i", str(paths[0]), "-frames:v", "1",
                      "-vf", f"scale={int(width)}:-2", "-f", "image2", "-c:v", "mjpeg",
                      "pipe:1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            data, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            data = b""
        finally:
            terminate(proc)
    return data or None


@dataclass
class ExportJob:
    """A download being prepared: `export()` writes it; `progress` is 0..1."""

    id: str
    camera: str
    start: float
    end: float
    path: Path
    plan: ExportPlan
    progress: float = 0.0
    state: str = "running"  # running | done | failed
    error: str = ""
    created: float = field(default_factory=time.monotonic)


class Exports:
    """Downloads of a range as MP4 through `recorder.export`, one at a time, kept for
    `keep_s` after they are done; files in a private temporary directory."""

    def __init__(self, root: Path, workdir: Path | None = None, keep_s: float = 600.0) -> None:
        self.root = root
        self._tmp = tempfile.TemporaryDirectory(prefix="ronda-web-exports-", dir=workdir)
        self.dir = Path(self._tmp.name)
        self.keep_s = keep_s
        self._lock = threading.Lock()
        self.jobs: dict[str, ExportJob] = {}

    def start(self, camera: str, start: float, end: float) -> ExportJob:
        """Plan and start an export; LookupError if there is no footage, RuntimeError if
        another export is running."""
        self._expire()
        with self._lock:
            if any(j.state == "running" for j in self.jobs.values()):
                raise RuntimeError("another download is being prepared; try again shortly")
            with open_index(self.root) as index:
                the_plan = plan(index, camera, start, end)
            if not the_plan.segments:
                raise LookupError("no footage in that range")
            job_id = uuid.uuid4().hex
            name = f"{camera}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(start))}.mp4"
            job = ExportJob(job_id, camera, start, end, self.dir / job_id / name, the_plan)
            job.path.parent.mkdir()
            self.jobs[job_id] = job
        threading.Thread(target=self._run, args=(job,), name=f"web-export-{job_id[:6]}",
                         daemon=True).start()
        return job

    def _run(self, job: ExportJob) -> None:
        total = max(job.plan.duration, 0.001)

        def progress(seconds: float) -> None:
            job.progress = min(1.0, seconds / total)

        try:
            export(self.root, job.plan, job.path, on_progress=progress)
            job.state = "done"
            job.progress = 1.0
        except (ExportError, OSError) as exc:
            job.state, job.error = "failed", str(exc)

    def get(self, job_id: str) -> ExportJob | None:
        self._expire()
        return self.jobs.get(job_id)

    def _expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            for job_id, job in list(self.jobs.items()):
                if job.state != "running" and now - job.created > self.keep_s:
                    job.path.unlink(missing_ok=True)
                    with contextlib.suppress(OSError):
                        job.path.parent.rmdir()
                    del self.jobs[job_id]

    def close(self) -> None:
        self._tmp.cleanup()
