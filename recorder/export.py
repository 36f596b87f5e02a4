"""Export: join the segments of one camera over a time range into one MP4, without
re-encoding (ffmpeg's concat demuxer, stream copy), and say where footage is missing.

Segments start at keyframes, so a clip starts at the beginning of the segment holding
`start` and ends with the segment holding `end`: exact to one segment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from drivers.cameras.progress import ProgressParser
from drivers.process import spawn, terminate
from recorder.index import Index, Segment


class ExportError(Exception):
    """ffmpeg could not write the clip."""


@dataclass
class ExportPlan:
    """What an export of `camera` from `start` to `end` will contain."""

    camera: str
    start: float
    end: float
    segments: list[Segment] = field(default_factory=list)
    gaps: list[tuple[float, float]] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Seconds of video the clip will hold."""
        return sum(s.duration for s in self.segments)


def plan(index: Index, camera: str, start: float, end: float,
         tolerance_s: float = 1.0) -> ExportPlan:
    """The segments overlapping [start, end) and the holes between them longer than
    `tolerance_s` (segment boundaries are not exact to the millisecond)."""
    result = ExportPlan(camera, start, end, index.segments(camera, start, end))
    cursor = start
    for seg in result.segments:
        if seg.start - cursor > tolerance_s:
            result.gaps.append((cursor, seg.start))
        cursor = max(cursor, seg.end)
    if end - cursor > tolerance_s:
        result.gaps.append((cursor, end))
    return result


PINS = ".export-"  # prefix of the store-root directories holding pinned segments


@contextlib.contextmanager
def pinned(root: Path, segments: list[Segment]) -> Iterator[list[Path]]:
    """The segments' files, hard-linked into ``<root>/.export-<pid>-.../`` for the
    duration, so that retention deleting one mid-export does not break the export (the
    link keeps the data). Falls back to the files themselves where the store cannot be
    written (read-only disk, not root); the recorder removes stale pin directories."""
    try:
        pin_dir = Path(tempfile.mkdtemp(prefix=f"{PINS}{os.getpid()}-", dir=root))
    except OSError:
        yield [root / s.path for s in segments]
        return
    with contextlib.suppress(OSError):  # `sudo ronda clips export`: the daemon (the store's
        owner = root.stat()                # owner) must be able to remove it if we are killed
        if os.geteuid() == 0 and owner.st_uid != 0:
            os.chown(pin_dir, owner.st_uid, owner.st_gid)
    try:
        paths = []
        for i, seg in enumerate(segments):
            link = pin_dir / f"{i:06d}.mp4"
            try:
                os.link(root / seg.path, link)
                paths.append(link)
            except FileNotFoundError:
                raise ExportError(f"{seg.path} was deleted before the export started "
                                  "(retention); try again") from None
            except OSError:
                paths.append(root / seg.path)
        yield paths
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's (root's) process
        return True
    return True


def sweep_pins(root: Path) -> dict[str, int]:
    """Remove the pin directories of exports that died (kill -9, a power cut), and count
    the bytes pins hold that retention could not free (a file only a pin still links).
    A pin directory this process cannot remove (made by root before pins were handed to
    the store's owner) stays counted in `stuck`, so the space never goes missing silently."""
    counts = {"removed": 0, "stuck": 0, "pinned_bytes": 0}
    for pin in Path(root).glob(f"{PINS}*"):
        if not pin.is_dir():
            continue
        pid = pin.name[len(PINS):].split("-", 1)[0]
        if not _pid_alive(pid):
            shutil.rmtree(pin, ignore_errors=True)
            if not pin.exists():
                counts["removed"] += 1
                continue
            counts["stuck"] += 1
        with contextlib.suppress(OSError):
            for link in pin.iterdir():
                st = link.stat()
                if st.st_nlink == 1:  # retention deleted the segment: only the pin holds it
                    counts["pinned_bytes"] += st.st_size
    return counts


def _concat_list(paths: list[Path]) -> str:
    lines = ["ffconcat version 1.0"]
    for p in paths:
        path = str(p.resolve()).replace("'", "'\\''")
        lines.append(f"file '{path}'")
    return "\n".join(lines) + "\n"


def export(root: Path, export_plan: ExportPlan, out: Path,
           on_progress: Callable[[float], None] | None = None) -> Path:
    """Write the plan's segments to `out` (via a hidden temporary file in the same
    directory, renamed at the end: never a half-written clip under the final name).
    `on_progress(seconds_written)` is called as ffmpeg goes."""
    if not export_plan.segments:
        raise ExportError("no footage to export")
    out = Path(out)
    part = out.with_name(f".{out.name}.part")
    with tempfile.TemporaryDirectory(prefix="ronda-export-") as tmp, \
            pinned(root, export_plan.segments) as paths:
        listing = Path(tmp) / "segments.ffconcat"
        listing.write_text(_concat_list(paths))
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats",
                "-progress", "pipe:1", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                "-map", "0:v:0", "-map", "0:a:0?", "-c", "copy", "-movflags", "+faststart",
                "-f", "mp4", str(part)]
        # stderr goes to a file: a pipe read only after exit would stall a chatty ffmpeg
        # (thousands of warnings over a long export) once 64 KiB are waiting in it.
        with (Path(tmp) / "stderr.log").open("w+b") as stderr:
            proc = spawn(args, stdout=subprocess.PIPE, stderr=stderr)
            try:
                assert proc.stdout is not None
                parser = ProgressParser()
                for raw in iter(proc.stdout.readline, b""):
                    block = parser.feed(raw.decode(errors="replace"))
                    written = (block or {}).get("out_time_us", "")
                    if on_progress is not None and written.isdigit():
                        on_progress(int(written) / 1e6)
                code = proc.wait()
            finally:
                terminate(proc)
            stderr.seek(max(stderr.seek(0, os.SEEK_END) - 4096, 0))
            errors = stderr.read().decode(errors="replace")
    if code != 0:
        part.unlink(missing_ok=True)
        raise ExportError(f"ffmpeg failed ({code}): {errors.strip()[-300:]}")
    os.replace(part, out)
    if on_progress is not None:
        on_progress(export_plan.duration)
    return out
