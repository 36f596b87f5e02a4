"""Live view: one ffmpeg per watched camera, stream copy into fragmented MP4, fanned out
to every viewer of that camera.

ffmpeg remuxes the camera's H.264 (``-c copy``: no decoding, no encoding) into fMP4 with
a fragment at each keyframe and at least every `FRAGMENT_S` (short fragments: a frame
leaves the node within that time instead of waiting for the next keyframe). The relay
cuts its output into top-level boxes: ``ftyp`` + ``moov`` is the init segment every
viewer gets first; each ``moof`` + ``mdat`` pair is a fragment. A viewer joining mid-way
gets the fragments since the last keyframe (the relay keeps them), so its picture starts
at once; the browser appends everything to a Media Source Extensions buffer.

A relay starts with its first viewer and stops `linger_s` after its last one leaves. A
camera whose stream is not H.264 (H.265: no browser plays it in MSE reliably) is
reported as `unsupported` with its codec, and the page falls back to snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import subprocess
import threading
import time
from collections.abc import Callable

import ffmpeg

from drivers.cameras.base import StreamInput
from drivers.process import spawn, terminate
from support.backoff import Backoff

log = logging.getLogger(__name__)

FMP4 = "frag_keyframe+empty_moov+default_base_moof"
FRAGMENT_S = 0.2
MAX_GOP_FRAGMENTS = 200  # a camera with a very long GOP: do not keep more than this


def live_args(source: StreamInput) -> list[str]:
    """ffmpeg: `source` stream-copied to fragmented MP4 on stdout. A short probe: the
    codec parameters come with the stream (SDP / SPS), and probing delays the first frame."""
    options = {"probesize": 100_000, "analyzeduration": 500_000, **source.options}
    stream = ffmpeg.input(source.url, **options).output(
        "pipe:1", map="0:v:0", c="copy", an=None, f="mp4", movflags=FMP4,
        frag_duration=int(FRAGMENT_S * 1e6))
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-fflags", "nobuffer", "-flags", "low_delay", *stream.get_args()]


def _children(data: bytes, start: int, end: int):
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        if size < 8:
            return
        yield kind, start + 8, min(start + size, end)
        start += size


def starts_with_keyframe(moof: bytes) -> bool:
    """Whether a fragment's first sample is a sync sample (from its ``trun``/``tfhd``
    sample flags; True when the flags are not there to say)."""
    for kind, a, b in _children(moof, 8, len(moof)):
        if kind != b"traf":
            continue
        default = None
        for sub, c, _end in _children(moof, a, b):
            flags = int.from_bytes(moof[c + 1:c + 4], "big")
            if sub == b"tfhd" and flags & 0x20:
                at = c + 8 + (8 if flags & 0x1 else 0) + sum(
                    4 for bit in (0x2, 0x8, 0x10) if flags & bit)
                default = int.from_bytes(moof[at:at + 4], "big")
            elif sub == b"trun":
                at = c + 8 + (4 if flags & 0x1 else 0)
                if flags & 0x4:
                    first = int.from_bytes(moof[at:at + 4], "big")
                elif flags & 0x400:
                    at += sum(4 for bit in (0x100, 0x200) if flags & bit)
                    first = int.from_bytes(moof[at:at + 4], "big")
                elif default is not None:
                    first = default
                else:
                    return True
                return not (first >> 16) & 1  # sample_is_non_sync_sample
    return True


def read_box(stream, limit: int = 64 * 2**20) -> tuple[bytes, bytes] | None:
    """The next top-level MP4 box from `stream`: (type, whole box bytes), None at EOF."""
    header = _read_exact(stream, 8)
    if header is None:
        return None
    size, kind = struct.unpack(">I4s", header)
    extra = b""
    if size == 1:
        extra = _read_exact(stream, 8) or b""
        size = struct.unpack(">Q", extra)[0] if len(extra) == 8 else 0
    if size < 8 + len(extra) or size > limit:
        raise ValueError(f"bad MP4 box {kind!r} of {size} bytes")
    body = _read_exact(stream, size - 8 - len(extra))
    if body is None:
        return None
    return kind, header + extra + body


def _read_exact(stream, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def codec_of(moov: bytes) -> tuple[str, str]:
    """(family, MSE codec string) from an init segment: ('h264', 'avc1.64001f'),
    ('h265', 'hvc1'), or ('other', name)."""
    for tag in (b"avc1", b"avc3"):
        if tag in moov and b"avcC" in moov:
            at = moov.index(b"avcC") + 4
            profile, compat, level = moov[at + 1], moov[at + 2], moov[at + 3]
            return "h264", f"{tag.decode()}.{profile:02x}{compat:02x}{level:02x}"
    for tag in (b"hvc1", b"hev1"):
        if tag in moov:
            return "h265", tag.decode()
    return "other", "unknown"


Deliver = Callable[[object], None]  # called on the relay thread with bytes or a dict


class Relay:
    """One camera's live stream for any number of viewers (thread-safe)."""

    def __init__(self, name: str, source: Callable[[], StreamInput | None],
                 linger_s: float = 10.0) -> None:
        self.name = name
        self.source = source
        self.linger_s = linger_s
        self.init: bytes | None = None
        self.codec: tuple[str, str] | None = None
        self.error = ""
        self.fragments = 0
        self.started_wall = 0.0  # when ffmpeg was started: stream time 0 is a little later
        self._gop: list[bytes] = []  # fragments since the last keyframe, for new viewers
        self._viewers: dict[int, Deliver] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen | None = None
        self._idle_since: float | None = None
        self._stop = threading.Event()

    def join(self, deliver: Deliver) -> int:
        """Add a viewer; `deliver` gets {'type': 'init', ...} then the init bytes, then
        fragments. Returns its key for `leave`."""
        key = id(deliver)
        with self._lock:
            self._viewers[key] = deliver
            self._idle_since = None
            if self.init is not None and self.codec is not None:
                self._hello(deliver)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=f"live:{self.name}",
                                                daemon=True)
                self._thread.start()
        return key

    def leave(self, key: int) -> None:
        with self._lock:
            self._viewers.pop(key, None)
            if not self._viewers:
                self._idle_since = time.monotonic()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    def _hello(self, deliver: Deliver) -> None:
        family, codec = self.codec or ("other", "unknown")
        if family != "h264":
            deliver({"type": "unsupported", "codec": family})
            return
        deliver({"type": "init", "mime": f'video/mp4; codecs="{codec}"',
                 "t0": self.started_wall})
        deliver(self.init)
        for fragment in self._gop:
            deliver(fragment)

    def _broadcast(self, data: object) -> None:
        with self._lock:
            viewers = list(self._viewers.values())
        for deliver in viewers:
            deliver(data)

    def _run(self) -> None:
        backoff = Backoff(1.0, 15.0)
        while not self._stop.is_set():
            with self._lock:
                if not self._viewers and self._idle_since is not None \
                        and time.monotonic() - self._idle_since > self.linger_s:
                    self._thread = None
                    return
            source = self.source()
            if source is None:
                self.error = "camera has no stream"
                self._broadcast({"type": "error", "message": self.error})
                self._stop.wait(backoff.next_delay())
                continue
            started = time.monotonic()
            self._pump(source)
            if time.monotonic() - started > 30:
                backoff.reset()
            if self._viewers:
                self._broadcast({"type": "error", "message": self.error or "stream ended"})
            self._stop.wait(backoff.next_delay() if self._viewers else 0.5)

    def _pump(self, source: StreamInput) -> None:
        self.started_wall = time.time()
        proc = spawn(live_args(source), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._proc = proc
        head: list[bytes] = []
        pending = b""
        try:
            assert proc.stdout is not None
            while not self._stop.is_set():
                box = read_box(proc.stdout)
                if box is None:
                    break
                kind, data = box
                if kind in (b"ftyp", b"moov"):
                    head.append(data)
                    if kind == b"moov":
                        with self._lock:
                            self._gop = []
                            self.init, self.codec = b"".join(head), codec_of(data)
                            for deliver in self._viewers.values():
                                self._hello(deliver)
                        self.error = ""
                elif kind == b"moof":
                    pending = data
                elif kind == b"mdat" and pending:
                    self.fragments += 1
                    if self.codec and self.codec[0] == "h264":
                        fragment = pending + data
                        with self._lock:
                            if starts_with_keyframe(pending) or \
                                    len(self._gop) >= MAX_GOP_FRAGMENTS:
                                self._gop = []
                            self._gop.append(fragment)
                            viewers = list(self._viewers.values())
                        for deliver in viewers:
                            deliver(fragment)
                    pending = b""
                with self._lock:
                    if not self._viewers and self._idle_since is not None \
                            and time.monotonic() - self._idle_since > self.linger_s:
                        break
        except (ValueError, OSError) as exc:
            self.error = str(exc)
        finally:
            terminate(proc, timeout=1.0)
            if proc.stderr is not None and proc.returncode not in (0, None, -15):
                self.error = self.error or f"ffmpeg exited ({proc.returncode})"
            self._proc = None
            with self._lock:
                self.init, self._gop = None, []

    def close(self) -> None:
        self._stop.set()
        proc = self._proc
        if proc is not None:
            terminate(proc, timeout=1.0)


class LiveHub:
    """Relays by camera, and the viewer limit over all of them."""

    def __init__(self, source: Callable[[str], StreamInput | None], max_viewers: int,
                 linger_s: float = 10.0) -> None:
        self.source = source
        self.max_viewers = max_viewers
        self.linger_s = linger_s
        self._relays: dict[str, Relay] = {}
        self._lock = threading.Lock()

    def viewers(self) -> int:
        return sum(r.viewers for r in self._relays.values())

    def join(self, camera: str, deliver: Deliver) -> tuple[Relay, int] | None:
        """Join `camera`'s relay, or None when the viewer limit is reached."""
        with self._lock:
            if self.viewers() >= self.max_viewers:
                return None
            relay = self._relays.get(camera)
            if relay is None:
                relay = self._relays[camera] = Relay(camera, lambda: self.source(camera),
                                                     self.linger_s)
            return relay, relay.join(deliver)

    def close(self) -> None:
        for relay in self._relays.values():
            relay.close()


def queue_deliver(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue,
                  on_overflow: Callable[[], None]) -> Deliver:
    """A `Deliver` that hands items to an asyncio queue from the relay thread; a viewer
    that falls `queue.maxsize` items behind misses fragments (its page jumps ahead)."""

    def put(item: object) -> None:
        if queue.full():
            on_overflow()
            return
        queue.put_nowait(item)

    return lambda item: loop.call_soon_threadsafe(put, item)
