"""Atomic file writes: a reader sees the old file or the new one, never half of either.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "state.json"
>>> atomic_write(p, '{"ok": true}')
>>> p.read_text()
'{"ok": true}'
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, mode: int = 0o644,
                 durable: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    ``durable`` fsyncs the file before the rename and the directory after it, so the new
    content survives a power cut once this returns (what a Pi without a UPS needs). ``mode``
    is set on the temporary file before any byte is written, so a secret is never readable
    by others, not even for a moment.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
