"""ManagedProcess waits for its child in the kernel (pidfd) and still sees every exit."""

from __future__ import annotations

import subprocess
import time

from drivers.managed import ExitWatch, ManagedProcess
from drivers.process import spawn, terminate


def test_exit_watch_reports_running_then_the_exit_code() -> None:
    proc = spawn(["sh", "-c", "sleep 0.4; exit 3"])
    watch = ExitWatch(proc)
    try:
        assert watch.fd is not None  # Linux >= 5.3: no polling
        started = time.monotonic()
        assert watch.wait(0.1) is None
        assert watch.wait(5.0) == 3
        assert time.monotonic() - started < 3.0
    finally:
        watch.close()
        terminate(proc)


def test_managed_process_restarts_an_exiting_child_and_says_why() -> None:
    states: list[tuple[str, str]] = []
    managed = ManagedProcess("t", lambda: ["sh", "-c", "echo going away >&2; exit 7"],
                             on_state=lambda s, r: states.append((s, r)),
                             backoff_min_s=0.1, backoff_cap_s=0.2, stdout=subprocess.DEVNULL)
    managed.start()
    try:
        deadline = time.monotonic() + 10
        while managed.restarts < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        managed.stop()
    assert managed.restarts >= 3
    assert ("offline", "exited with code 7: going away") in states
