"""ffprobe helpers: is a file playable video, and how long is it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ffmpeg


def duration(path: Path, timeout: float = 20.0) -> float | None:
    """Seconds of decodable video in `path` (packet timestamps), or None if unplayable.

    Reads the packets' timestamps rather than trusting the container header, which a
    fragmented MP4 cut short by a crash does not have.
    """
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
             "packet=pts_time,duration_time", "-of", "csv=p=0", str(path)],
            capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    first = last = None
    last_duration = 0.0
    for line in out.stdout.decode(errors="replace").splitlines():
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


def decodes(path: Path, timeout: float = 30.0) -> bool:
    """Whether ffmpeg decodes every video frame of `path` without an error."""
    try:
        out = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
             "-f", "null", "-"], capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and not out.stderr.strip()


def packet_count(path: Path, timeout: float = 20.0) -> int:
    """Video packets ffprobe finds in `path` (0 if none or unreadable)."""
    try:
        out = subprocess.run(
            ["ffprobe", "-v", "quiet", "-select_streams", "v:0", "-show_entries",
             "packet=pts_time", "-of", "csv=p=0", str(path)],
            capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.strip())


def salvage(path: Path, dest: Path, timeout: float = 60.0) -> bool:
    """Copy the undamaged part of a segment cut short in the middle of a frame (disk full,
    power cut) into `dest`: every packet but the last, remuxed as fragmented MP4 without
    re-encoding. True if `dest` then decodes cleanly."""
    keep = packet_count(path) - 1
    if keep < 1:
        return False
    try:
        out = subprocess.run(
            ["ffmpeg", "-nostdin", "-v", "quiet", "-y", "-i", str(path), "-map", "0:v:0",
             "-c", "copy", "-frames:v", str(keep), "-f", "mp4", "-movflags",
             "+frag_keyframe+empty_moov+default_base_moof", str(dest)],
            capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and decodes(dest)


def container_duration(path: Path) -> float | None:
    """The container's stated duration (ffmpeg-python's probe), or None."""
    try:
        info = ffmpeg.probe(str(path))
        return float(info["format"]["duration"])
    except (ffmpeg.Error, KeyError, ValueError, OSError):
        return None
