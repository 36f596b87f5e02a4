"""Child processes (ffmpeg, GStreamer) that never outlive the daemon.

Every child is started in its own process group and, on Linux, with PR_SET_PDEATHSIG so
that the kernel kills it if the daemon dies, even by SIGKILL. `terminate` stops one
politely (q on stdin for ffmpeg, then SIGTERM, then SIGKILL) and always reaps it.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    os.setpgid(0, 0)


def spawn(args: Sequence[str], **kwargs) -> subprocess.Popen:
    """Start `args` as a child that dies with us. Keyword arguments go to Popen."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("close_fds", True)
    return subprocess.Popen(list(args), preexec_fn=_die_with_parent, **kwargs)


def terminate(proc: subprocess.Popen, timeout: float = 3.0) -> int | None:
    """Stop `proc` and reap it: SIGTERM to its group, SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    return proc.poll()
