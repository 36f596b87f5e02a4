"""What a fragmented MP4 segment holds, read from its boxes: tracks, frames, seconds.

The recorder checks every segment ffmpeg closes before indexing it: how many video frames it
holds and how long they last, from the sample tables of its fragments (``moof/traf``:
``tfhd``, ``trun``), without reading a byte of the media data (``mdat`` is skipped). That
costs a few reads per fragment (one fragment per keyframe), where an ``ffprobe`` per segment
would cost a process start on a Raspberry Pi every few seconds per camera.

What it answers, and why the recorder asks:

- a segment with no video frame is not footage (ffmpeg killed before its first frame still
  names a file in its segment list): never indexed;
- the indexed duration is the sum of the frames' durations, not what the segment list says
  (the list counts from the previous cut, so the first segment of a run is as long as the
  camera took to send its first frame, longer than its frames);
- frames a few microseconds apart are footage squeezed by a timestamp jump (``squeezed``).

Example::

    info = read(Path("cam-20261128T013502.250Z.mp4"))
    info.video.frames, info.video.seconds, info.audio and info.audio.codec
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

#: Frames closer than this are squeezed (a real camera sends at most 60 per second).
SQUEEZED_S = 0.002
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf"}


class Mp4Error(Exception):
    """Not a (fragmented) MP4 this module can read."""


@dataclass
class Track:
    """One track: its kind (``vide``, ``soun``), codec and the samples of its fragments."""

    track_id: int
    handler: str = ""
    codec: str = ""
    timescale: int = 0
    default_duration: int = 0
    frames: int = 0
    ticks: int = 0
    squeezed: int = 0  # samples shorter than SQUEEZED_S (a timestamp jump squeezed them)

    @property
    def seconds(self) -> float:
        """How long the samples last."""
        return self.ticks / self.timescale if self.timescale else 0.0


@dataclass
class Mp4Info:
    """The tracks of one file."""

    tracks: dict[int, Track] = field(default_factory=dict)

    def _first(self, handler: str) -> Track | None:
        return next((t for t in self.tracks.values() if t.handler == handler), None)

    @property
    def video(self) -> Track | None:
        return self._first("vide")

    @property
    def audio(self) -> Track | None:
        return self._first("soun")


def _boxes(fh: BinaryIO, end: int):
    """(type, payload offset, payload size) of the boxes from the current offset to `end`."""
    while True:
        start = fh.tell()
        if end - start < 8:
            return
        header = fh.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        offset = start + 8
        if size == 1:
            large = fh.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            offset += 8
        elif size == 0:
            size = end - start
        if size < offset - start or start + size > end:
            return  # cut short (a crash mid-write): what came before still counts
        yield kind, offset, start + size - offset
        fh.seek(start + size)


def read(path: Path) -> Mp4Info:
    """The tracks and sample counts of `path` (none for a file cut before its `moov`);
    raises Mp4Error if it cannot be read as MP4 boxes."""
    info = Mp4Info()
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(0)
            _walk(fh, size, info, None)
    except (OSError, struct.error) as exc:
        raise Mp4Error(f"{path.name}: {exc}") from exc
    return info


def _walk(fh: BinaryIO, end: int, info: Mp4Info, track: Track | None) -> None:
    current = track
    traf_defaults: dict[str, int] = {}
    for kind, offset, size in list(_boxes(fh, end)):
        fh.seek(offset)
        if kind in _CONTAINERS:
            if kind == b"trak":
                current = None
            _walk(fh, offset + size, info, current)
            continue
        body = fh.read(min(size, 1 << 20)) if kind != b"mdat" else b""
        if kind == b"tkhd":
            version = body[0]
            track_id = struct.unpack(">I", body[12:16] if version == 0 else body[20:24])[0]
            current = info.tracks.setdefault(track_id, Track(track_id))
        elif kind == b"mdhd" and current is not None:
            version = body[0]
            current.timescale = struct.unpack(">I", body[12:16] if version == 0
                                              else body[20:24])[0]
        elif kind == b"hdlr" and current is not None:
            current.handler = body[8:12].decode("latin-1")
        elif kind == b"stsd" and current is not None and len(body) >= 16:
            current.codec = body[12:16].decode("latin-1")
        elif kind == b"trex":
            track_id, _, duration = struct.unpack(">III", body[4:16])
            info.tracks.setdefault(track_id, Track(track_id)).default_duration = duration
        elif kind == b"tfhd":
            flags = int.from_bytes(body[1:4], "big")
            track_id = struct.unpack(">I", body[4:8])[0]
            pos = 8 + (8 if flags & 0x1 else 0) + (4 if flags & 0x2 else 0)
            current = info.tracks.setdefault(track_id, Track(track_id))
            traf_defaults = {"duration": current.default_duration}
            if flags & 0x8:
                traf_defaults["duration"] = struct.unpack(">I", body[pos:pos + 4])[0]
        elif kind == b"trun" and current is not None:
            _trun(body, current, traf_defaults.get("duration", current.default_duration))


def _trun(body: bytes, track: Track, default_duration: int) -> None:
    flags = int.from_bytes(body[1:4], "big")
    count = struct.unpack(">I", body[4:8])[0]
    pos = 8 + (4 if flags & 0x1 else 0) + (4 if flags & 0x4 else 0)
    per_sample = sum(4 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
    limit = SQUEEZED_S * track.timescale if track.timescale else 0
    for _ in range(count):
        if flags & 0x100:
            if pos + 4 > len(body):
                break
            duration = struct.unpack(">I", body[pos:pos + 4])[0]
        else:
            duration = default_duration
        pos += per_sample
        track.frames += 1
        track.ticks += duration
        if track.handler == "vide" and duration < limit:
            track.squeezed += 1
