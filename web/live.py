"""Live view: one ffmpeg per watched camera, stream copy into fragmented MP4, fanned out
to every viewer of that camera.

ffmpeg remuxes the camera's H.264 (``-c copy``: no decoding, no encoding) into fMP4 with
a fragment at each keyframe. The relay cuts its output into top-level boxes: ``ftyp`` +
``moov`` is the init segment every viewer gets first; each ``moof`` + ``mdat`` pair is a
fragment that starts with a keyframe, so a viewer may join at any fragment. The browser
appends them to a Media Source Extensions buffer.

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


def live_args(source: StreamInput) -> list[str]:
    """ffmpeg: `source` stream-copied to fragmented MP4 on stdout."""
    stream = ffmpeg.input(source.url, **source.options).output(
        "pipe:1", map="0:v:0", c="copy", an=None, f="mp4", movflags=FMP4)
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            "-fflags", "nobuffer", "-flags", "low_delay", *stream.get_args()]


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
        deliver({"type": "init", "mime": f'video/mp4; codecs="{codec}"'})
        deliver(self.init)

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
                            self.init, self.codec = b"".join(head), codec_of(data)
                            for deliver in self._viewers.values():
                                self._hello(deliver)
                        self.error = ""
                elif kind == b"moof":
                    pending = data
                elif kind == b"mdat" and pending:
                    self.fragments += 1
                    if self.codec and self.codec[0] == "h264":
                        self._broadcast(pending + data)
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
                self.init = None

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
