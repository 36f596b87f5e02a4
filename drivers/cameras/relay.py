"""A local fan-out point for cameras whose streams come from a producer process.

A USB or CSI camera can be opened by one process only, yet the recorder and the
detector both want its stream. The producer (ffmpeg, gst-launch, the picamera2 script)
pushes its stream over TCP into the relay's *ingest* port; every consumer connects to
the relay's *serve* port (``tcp://127.0.0.1:<port>``) and gets the bytes from the
moment it joins, cut at whole units (188-byte MPEG-TS packets, or whole raw frames).

Why a relay in the daemon and not an RTSP server or UDP multicast: it is ~200 lines of
standard library, costs a memcpy per consumer, works with any consumer that reads
``tcp://`` (ffmpeg does), needs no extra package on the Pi, and its ports are fixed
for the daemon's lifetime so the `StreamInput`s handed out at build time stay valid
across producer restarts. When the producer goes away the relay hangs up on its
consumers, which then restart cleanly against the next producer's stream header.

Each consumer has its own queue, limited in *bytes* (`max_bytes`), never slowing the
others down. What happens when it is full depends on the stream:

- MPEG-TS (main): a gap would corrupt what the consumer writes, so the consumer is dropped
  (it reconnects under its own supervisor). The default, 16 MiB, is 16 s of an 8 Mbit/s
  stream: a recorder held up by a slow SD card for a few seconds is not dropped.
- raw frames (detect): whole frames are skipped for that consumer, which stays aligned
  (a detector a little slower than the camera sees fewer frames, not a reconnect). The
  default is 4 MiB but at least 2 frames: ~12 frames at 640x360, so a stalled consumer
  holds a few MB, not hundreds.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

TS_PACKET = 188
TS_MAX_BYTES = 16 << 20  # 16 s of an 8 Mbit/s main stream
RAW_MAX_BYTES = 4 << 20  # raw frames: ~12 frames at 640x360 (at least 2 frames)


class _Consumer:
    """One reader of the stream: a byte-limited queue and a thread that sends it."""

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self.sock = sock
        self.max_bytes = max_bytes
        self.queued = 0  # bytes waiting in `pending`
        self.pending: collections.deque[bytes | bytearray] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self.alive = True
        self.skipping = False  # raw frames are being skipped for it (logged once)

    def run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self.pending and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                    data = self.pending.popleft()
                self.sock.sendall(data)
                with self._cond:
                    self.queued -= len(data)  # counted until sent: the bytes are held till then
        except OSError:
            pass
        finally:
            self.alive = False
            with self._cond:
                self.pending.clear()
                self.queued = 0
            with contextlib.suppress(OSError):
                self.sock.close()

    def offer(self, data: bytes | bytearray) -> bool:
        """Queue `data` unless that would hold more than `max_bytes`; False = full."""
        with self._cond:
            if self.queued + len(data) > self.max_bytes:
                return False
            self.pending.append(data)
            self.queued += len(data)
            self._cond.notify()
            return True

    def close(self) -> None:
        self.alive = False
        with self._cond:
            self._closed = True
            self.pending.clear()
            self._cond.notify()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class StreamRelay:
    """One stream: a producer pushes into `ingest_port`, consumers read `serve_port`."""

    def __init__(self, name: str, *, unit: int = TS_PACKET, max_bytes: int | None = None,
                 on_data: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.unit = unit
        self.raw = unit != TS_PACKET  # raw video: one frame a chunk; a full queue skips frames
        if max_bytes is None:
            max_bytes = max(RAW_MAX_BYTES, 2 * unit) if self.raw else TS_MAX_BYTES
        self.max_bytes = max(max_bytes, unit)
        self.on_data = on_data or (lambda n: None)
        self._ingest = self._listen()
        self._serve = self._listen()
        self.ingest_port = self._ingest.getsockname()[1]
        self.serve_port = self._serve.getsockname()[1]
        self._consumers: list[_Consumer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.bytes_in = 0
        self.dropped_consumers = 0
        self.skipped_frames = 0  # raw frames not sent to a consumer whose queue was full
        self.producers = 0

    @property
    def url(self) -> str:
        """Where consumers read the stream."""
        return f"tcp://127.0.0.1:{self.serve_port}"

    @property
    def ingest_url(self) -> str:
        """Where the producer writes the stream."""
        return f"tcp://127.0.0.1:{self.ingest_port}"

    @property
    def consumers(self) -> int:
        with self._lock:
            return sum(c.alive for c in self._consumers)

    def start(self) -> None:
        self._stop.clear()
        for target, name in ((self._accept_producers, "ingest"), (self._accept_consumers, "serve")):
            thread = threading.Thread(target=target, name=f"relay:{self.name}:{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop relaying; the ports stay reserved so that `start` can resume on them."""
        self._stop.set()
        for thread in self._threads:
            thread.join(2)
        self._threads.clear()
        self._hang_up()

    def close(self) -> None:
        """Stop for good and free the ports."""
        self.stop()
        for sock in (self._ingest, self._serve):
            with contextlib.suppress(OSError):
                sock.close()

    def health(self) -> dict:
        return {"bytes_in": self.bytes_in, "consumers": self.consumers,
                "dropped_consumers": self.dropped_consumers,
                "skipped_frames": self.skipped_frames}

    # ----------------------------------------------------------------------------------
    @staticmethod
    def _listen() -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(0.5)
        return sock

    def _accept(self, listener: socket.socket) -> socket.socket | None:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return None
        except OSError:
            if not self._stop.is_set():
                self._stop.wait(0.5)
            return None
        conn.settimeout(None)
        return conn

    def _accept_consumers(self) -> None:
        while not self._stop.is_set():
            conn = self._accept(self._serve)
            if conn is None:
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            consumer = _Consumer(conn, self.max_bytes)
            threading.Thread(target=consumer.run, name=f"relay:{self.name}:out",
                             daemon=True).start()
            with self._lock:
                self._consumers = [c for c in self._consumers if c.alive] + [consumer]

    def _accept_producers(self) -> None:
        current: threading.Thread | None = None
        conn_box: list[socket.socket] = []
        while not self._stop.is_set():  # checked at least every 0.5 s (accept timeout)
            conn = self._accept(self._ingest)
            if conn is None:
                continue
            for old in conn_box:  # a new producer replaces the old one
                with contextlib.suppress(OSError):
                    old.shutdown(socket.SHUT_RDWR)
            if current is not None:
                current.join(2)
            conn_box[:] = [conn]
            self.producers += 1
            current = threading.Thread(target=self._pump, args=(conn,),
                                       name=f"relay:{self.name}:in", daemon=True)
            current.start()
        for old in conn_box:
            with contextlib.suppress(OSError):
                old.shutdown(socket.SHUT_RDWR)
        if current is not None:
            current.join(2)

    def _pump(self, conn: socket.socket) -> None:
        # Received straight into a buffer (no bytes concatenation): a raw frame is filled in
        # place and handed to the consumers as is (a new buffer for the next one); MPEG-TS
        # is passed on as soon as whole packets are in, the odd bytes kept for the next read.
        size = self.unit if self.raw else TS_PACKET * 348  # ~64 KB of packets
        buf = bytearray(size)
        view = memoryview(buf)
        filled = 0
        try:
            while not self._stop.is_set():
                n = conn.recv_into(view[filled:])
                if not n:
                    break
                self.bytes_in += n
                self.on_data(n)
                filled += n
                if self.raw:
                    if filled < size:
                        continue
                    self._fan_out(buf)  # the consumers own it now
                    buf = bytearray(size)
                    view = memoryview(buf)
                    filled = 0
                    continue
                whole = filled - filled % self.unit
                if not whole:
                    continue
                self._fan_out(bytes(view[:whole]))
                rest = filled - whole
                view[:rest] = view[whole:filled]
                filled = rest
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            self._hang_up()  # consumers restart against the next producer's headers

    def _fan_out(self, data: bytes | bytearray) -> None:
        with self._lock:
            consumers = list(self._consumers)
        for consumer in consumers:
            if not consumer.alive:
                continue
            if consumer.offer(data):
                consumer.skipping = False
                continue
            if self.raw:  # skip this frame for it: it stays aligned and catches up
                self.skipped_frames += 1
                if not consumer.skipping:
                    consumer.skipping = True
                    log.warning("relay %s: a consumer fell %d bytes behind; skipping frames "
                                "for it", self.name, consumer.queued)
            else:
                log.warning("relay %s: a consumer fell %d bytes behind; dropping it",
                            self.name, consumer.queued)
                self.dropped_consumers += 1
                consumer.close()

    def _hang_up(self) -> None:
        with self._lock:
            consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.close()
