"""Child processes (ffmpeg, GStreamer) that never outlive the daemon.

Every child is started in its own process group and, on Linux, with PR_SET_PDEATHSIG so
that the kernel kills it if the daemon dies, even by SIGKILL. `terminate` sends SIGTERM to
the child's process group, SIGKILL if it is still there after a timeout, and always reaps
it (stdin is /dev/null unless the caller asks otherwise: nothing is written to it).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once here, in the parent.

    Not in the child: between fork and exec in a threaded process, dlopen/dlsym could wait
    forever on the loader lock that another thread held at the fork.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    return prctl


_prctl = _load_prctl()
_SIGKILL = int(signal.SIGKILL)


def _die_with_parent() -> None:  # runs in the child between fork and exec: no loading here
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
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
