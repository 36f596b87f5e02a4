"""One HTTP PUT of one file, paced, to a checked `Target`.

The connection goes to the address that `uplink.targets` checked (TLS still verifies the
host name). The body is sent in chunks from the file; the socket timeout is
`stall_s`, so a server that stops reading mid-body fails the try instead of hanging it.

Outcome: returns the HTTP status on 2xx. Otherwise `UploadError` with `retry` telling
whether another try can help: 5xx, 408, 429 and network errors can; 4xx cannot (a
presigned URL that answers 403 is expired or wrong, and will stay so). Resuming a PUT
midway needs a server that accepts ranged PUT, which S3 presigned URLs and nginx's
WebDAV do not: a new try sends the whole file again.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from uplink.bandwidth import Pacer
from uplink.targets import Target

CHUNK = 1024 * 1024


class UploadError(Exception):
    """A try failed; `retry` says whether another may succeed."""

    def __init__(self, message: str, *, retry: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retry = retry
        self.status = status


class Stopped(Exception):
    """The node is shutting down mid-upload (the job stays queued)."""


def _connect(target: Target, timeout: float) -> http.client.HTTPConnection:
    last: OSError | None = None
    for address in target.addresses:
        try:
            sock = socket.create_connection((address, target.port), timeout=timeout)
        except OSError as exc:
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if target.scheme == "https":
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=target.host)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                target.host, target.port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        conn.sock = sock
        return conn
    raise UploadError(f"cannot connect to {target.host}:{target.port}: {last}", retry=True)


def put_file(target: Target, path: Path, *, pacer: Pacer | None = None, stall_s: float = 30.0,
             on_progress: Callable[[int], None] | None = None,
             stop: threading.Event | None = None, content_type: str = "video/mp4",
             headers: dict[str, str] | None = None) -> int:
    """PUT `path` to `target`; the 2xx status, else `UploadError` (or `Stopped`)."""
    size = path.stat().st_size
    done = [0]  # bytes sent so far, also when a send fails midway
    try:
        conn = _connect(target, stall_s)
        try:
            conn.putrequest("PUT", target.path, skip_accept_encoding=True)
            conn.putheader("Content-Length", str(size))
            conn.putheader("Content-Type", content_type)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.endheaders()
            try:
                _send_body(conn, path, size, pacer, on_progress, stop, done, stall_s)
            except (BrokenPipeError, ConnectionResetError):
                # a server may answer (403, 413) and close before the body is through:
                # its answer, if it reached us, says more than the broken pipe
                conn.sock.settimeout(2)
            response = conn.getresponse()
            body = response.read(512).decode(errors="replace").strip()
        finally:
            conn.close()
    except (UploadError, Stopped):
        raise
    except TimeoutError:
        if done[0] < size:
            why = (f"the server stopped accepting data after {done[0]} of {size} bytes "
                   f"(nothing for {stall_s:.0f} s)")
        else:
            why = f"no answer {stall_s:.0f} s after the whole body ({size} bytes) was sent"
        raise UploadError(why, retry=True) from None
    except (OSError, http.client.HTTPException) as exc:
        if isinstance(exc, ssl.SSLCertVerificationError):
            raise UploadError(f"TLS certificate not valid: {exc}", retry=False) from None
        raise UploadError(f"connection failed after {done[0]} of {size} bytes: {exc}",
                          retry=True) from None
    status = response.status
    if 200 <= status < 300:
        return status
    why = f"the server answered {status} {response.reason}" + (f": {body[:200]}" if body else "")
    retry = status >= 500 or status in (408, 429)
    raise UploadError(why, retry=retry, status=status)


def _send_body(conn: http.client.HTTPConnection, path: Path, size: int, pacer: Pacer | None,
               on_progress: Callable[[int], None] | None, stop: threading.Event | None,
               done: list[int], stall_s: float) -> None:
    """The file in chunks, so that pacing, progress and stop act between them.

    Plain HTTP uses `os.sendfile` (zero copy) on a blocking socket whose SO_SNDTIMEO is
    `stall_s`: the kernel says when nothing could be sent for that long. (Python's own
    `socket.sendfile` with a timeout polls before every call, measured 15 % slower than
    curl; without a timeout it would wait for ever on a stalled server.) TLS sends
    copies with the socket's timeout."""
    sock = conn.sock
    plain = not isinstance(sock, ssl.SSLSocket)
    if plain:
        sock.settimeout(None)
        sec = int(stall_s)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", sec, int((stall_s - sec) * 1e6)))
    sent = 0
    try:
        with path.open("rb") as f:
            while sent < size:
                if stop is not None and stop.is_set():
                    raise Stopped()
                count = min(CHUNK, size - sent)
                if pacer is not None:
                    pacer.wait(count, stop)
                if plain:
                    try:
                        n = os.sendfile(sock.fileno(), f.fileno(), sent, count)
                    except BlockingIOError:  # SO_SNDTIMEO: nothing accepted for stall_s
                        raise TimeoutError from None
                else:
                    f.seek(sent)
                    chunk = f.read(count)
                    sock.sendall(chunk)
                    n = len(chunk)
                if n == 0:
                    raise UploadError(f"{path.name} shrank while being sent", retry=True)
                sent += n
                done[0] = sent
                if on_progress is not None:
                    on_progress(sent)
    finally:
        if plain:
            sock.settimeout(stall_s)  # for the answer
