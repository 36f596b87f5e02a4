"""One JPEG from a stream, with ffmpeg: what `ctx.shared["snapshot"]` does by default.

ffmpeg opens the stream, decodes until the first picture (a keyframe away: at most one
GOP, about a second on a well-configured camera) and writes it as JPEG to stdout. The
child is killed at `timeout` and always reaped, so a dead camera costs `timeout`
seconds and nothing else.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time

from drivers.cameras.base import StreamInput
from drivers.process import spawn, terminate

log = logging.getLogger(__name__)


def grab_jpeg(stream: StreamInput, timeout: float = 3.0, *, width: int | None = 640,
              quality: int = 5) -> bytes | None:
    """A JPEG of the stream now (scaled to `width` px wide, None = as is), or None.

    `quality` is ffmpeg's mjpeg `-q:v` (2 best .. 31 worst).
    """
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            *stream.ffmpeg_args(), "-an", "-frames:v", "1"]
    if width:
        args += ["-vf", f"scale='min({width},iw)':-2"]
    args += ["-c:v", "mjpeg", "-q:v", str(quality), "-f", "image2pipe", "pipe:1"]
    deadline = time.monotonic() + timeout
    try:
        proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        log.warning("snapshot: cannot run ffmpeg: %s", exc)
        return None
    chunks: list[bytes] = []

    def _read() -> None:
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read(65536), b""):
            chunks.append(chunk)

    reader = threading.Thread(target=_read, daemon=True)
    reader.start()
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        log.info("snapshot of %s: no picture within %.1f s", stream, timeout)
    reader.join(max(0.1, deadline - time.monotonic()))
    code = terminate(proc, 1.0)
    reader.join(1.0)
    data = b"".join(chunks)
    if code == 0 and data.startswith(b"\xff\xd8") and data.rstrip(b"\0").endswith(b"\xff\xd9"):
        return data
    return None
