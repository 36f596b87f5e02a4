"""ffprobe helpers: is a file playable video, and how long is it.

Recovery checks leftovers on a Raspberry Pi, where a full decode of a long or H.265
segment takes longer than any sane timeout: `tail_decodes` decodes only the end of a
file (from the keyframe before its last `TAIL_S` seconds), which is where a crash or a
full disk damages a fragmented MP4. Every helper takes `progress`, called about twice a
second while the child runs, so a supervisor's stall detector sees the work go on."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import ffmpeg

from drivers.process import spawn, terminate

#: Seconds at the end of a file that `tail_decodes` decodes.
TAIL_S = 3.0
#: How long `tail_decodes` may take before the answer is "not known".
CHECK_TIMEOUT_S = 30.0

Progress = Callable[[], None] | None


class TimedOut(Exception):
    """The child did not finish within its timeout."""


def _run(args: list[str], timeout: float, progress: Progress = None) -> tuple[int, bytes, bytes]:
    """Run `args` to the end: (returncode, stdout, stderr); `progress()` about every
    half second. Raises TimedOut (the child killed) or OSError."""
    proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out: list[bytes] = []
    err: list[bytes] = []

    def drain(stream, into: list[bytes]) -> None:
        into.append(stream.read())

    readers = [threading.Thread(target=drain, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                code = proc.wait(timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise TimedOut(f"{args[0]} took more than {timeout:g} s") from None
                if progress is not None:
                    progress()
    finally:
        terminate(proc)
        for reader in readers:
            reader.join(5.0)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return code, b"".join(out), b"".join(err)


def duration(path: Path, timeout: float = 60.0, progress: Progress = None) -> float | None:
    """Seconds of decodable video in `path` (packet timestamps), or None if unplayable.

    Reads the packets' timestamps (demuxing only, no decoding) rather than trusting the
    container header, which a fragmented MP4 cut short by a crash does not have.
    """
    try:
        code, stdout, _ = _run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
             "packet=pts_time,duration_time", "-of", "csv=p=0", str(path)],
            timeout, progress)
    except (OSError, TimedOut):
        return None
    if code != 0:
        return None
    first = last = None
    last_duration = 0.0
    for line in stdout.decode(errors="replace").splitlines():
        parts = line.strip().split(",")
        try:
            pts = float(parts[0])
        except (ValueError, IndexError):
            continue
        first = pts if first is None else min(first, pts)
        if last is None or pts >= last:
            last = pts
            try:
                last_duration = float(parts[1])
            except (ValueError, IndexError):
                last_duration = 0.0
    if first is None or last is None:
        return None
    return max(last - first + last_duration, 0.0)


def tail_decodes(path: Path, length: float, timeout: float | None = None,
                 progress: Progress = None) -> bool | None:
    """Whether the last `TAIL_S` seconds of `path` (`length` s long, from `duration`)
    decode without an error: ffmpeg seeks to the keyframe before them and decodes to the
    end. None if that took longer than `timeout` (not known, not damaged)."""
    args = ["ffmpeg", "-nostdin", "-v", "error"]
    if length > TAIL_S:
        args += ["-ss", f"{length - TAIL_S:.3f}"]
    args += ["-i", str(path), "-map", "0:v:0", "-f", "null", "-"]
    try:
        code, _, stderr = _run(args, CHECK_TIMEOUT_S if timeout is None else timeout,
                               progress)
    except TimedOut:
        return None
    except OSError:
        return False
    return code == 0 and not stderr.strip()


def decodes(path: Path, timeout: float = 30.0) -> bool:
    """Whether ffmpeg decodes every video frame of `path` without an error."""
    try:
        out = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
             "-f", "null", "-"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and not out.stderr.strip()


def packet_count(path: Path, timeout: float = 60.0, progress: Progress = None) -> int:
    """Video packets ffprobe finds in `path` (0 if none or unreadable)."""
    try:
        _, stdout, _ = _run(
            ["ffprobe", "-v", "quiet", "-select_streams", "v:0", "-show_entries",
             "packet=pts_time", "-of", "csv=p=0", str(path)], timeout, progress)
    except (OSError, TimedOut):
        return 0
    return sum(1 for line in stdout.splitlines() if line.strip())


def salvage(path: Path, dest: Path, timeout: float = 60.0, progress: Progress = None) -> bool:
    """Copy the undamaged part of a segment cut short in the middle of a frame (disk full,
    power cut) into `dest`: every packet but the last, remuxed as fragmented MP4 without
    re-encoding. True if the end of `dest` then decodes cleanly."""
    keep = packet_count(path, progress=progress) - 1
    if keep < 1:
        return False
    try:
        code, _, _ = _run(
            ["ffmpeg", "-nostdin", "-v", "quiet", "-y", "-i", str(path), "-map", "0:v:0",
             "-c", "copy", "-frames:v", str(keep), "-f", "mp4", "-movflags",
             "+frag_keyframe+empty_moov+default_base_moof", str(dest)], timeout, progress)
    except (OSError, TimedOut):
        return False
    if code != 0:
        return False
    length = duration(dest, progress=progress)
    return length is not None and tail_decodes(dest, length, progress=progress) is not False


def container_duration(path: Path) -> float | None:
    """The container's stated duration (ffmpeg-python's probe), or None."""
    try:
        info = ffmpeg.probe(str(path))
        return float(info["format"]["duration"])
    except (ffmpeg.Error, KeyError, ValueError, OSError):
        return None
