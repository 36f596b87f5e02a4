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

A consumer that cannot keep up (its queue of `max_queue` units fills) is dropped
rather than slowing the others; it reconnects under its own supervisor.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

TS_PACKET = 188


class _Consumer:
    def __init__(self, sock: socket.socket, max_queue: int) -> None:
        self.sock = sock
        self.queue: queue.Queue[bytes | None] = queue.Queue(max_queue)
        self.alive = True

    def run(self) -> None:
        try:
            while True:
                data = self.queue.get()
                if data is None:
                    return
                self.sock.sendall(data)
        except OSError:
            pass
        finally:
            self.alive = False
            with contextlib.suppress(OSError):
                self.sock.close()

    def offer(self, data: bytes) -> bool:
        try:
            self.queue.put_nowait(data)
            return True
        except queue.Full:
            return False

    def close(self) -> None:
        self.alive = False
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)


class StreamRelay:
    """One stream: a producer pushes into `ingest_port`, consumers read `serve_port`."""

    def __init__(self, name: str, *, unit: int = TS_PACKET, max_queue: int = 256,
                 on_data: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.unit = unit
        self.chunk = unit * (64 if unit == TS_PACKET else 1)  # raw video: one frame a chunk
        self.max_queue = max_queue
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
                "dropped_consumers": self.dropped_consumers}

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
            consumer = _Consumer(conn, self.max_queue)
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
        pending = b""
        try:
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    break
                self.bytes_in += len(data)
                self.on_data(len(data))
                pending += data
                whole = len(pending) - len(pending) % self.unit
                if not whole:
                    continue
                out, pending = pending[:whole], pending[whole:]
                for start in range(0, len(out), self.chunk):
                    self._fan_out(out[start:start + self.chunk])
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                conn.close()
            self._hang_up()  # consumers restart against the next producer's headers

    def _fan_out(self, data: bytes) -> None:
        with self._lock:
            consumers = list(self._consumers)
        for consumer in consumers:
            if consumer.alive and not consumer.offer(data):
                log.warning("relay %s: a consumer fell behind; dropping it", self.name)
                self.dropped_consumers += 1
                consumer.close()

    def _hang_up(self) -> None:
        with self._lock:
            consumers, self._consumers = self._consumers, []
        for consumer in consumers:
            consumer.close()
