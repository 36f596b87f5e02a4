"""ManagedProcess waits for its child in the kernel (pidfd) and still sees every exit."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time

import pytest

from drivers.managed import ExitWatch, ManagedProcess
from drivers.process import spawn, terminate
from tests.waiting import all_of, wait_for


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
        wait_for(lambda: managed.restarts >= 3, 10, "three restarts")
    finally:
        managed.stop()
    assert 0.1 <= managed.last_delay_s <= 0.2  # the backoff's floor and cap, jitter between
    assert ("offline", "exited with code 7: going away") in states


def test_a_loop_that_outlived_stop_does_not_come_back_on_the_next_start() -> None:
    """stop() gives up on a loop stuck in a slow make_args; the next start() must not
    revive it: one child per ManagedProcess, never two."""
    gate = threading.Event()
    calls: list[int] = []
    children: list[subprocess.Popen] = []

    def make_args() -> list[str]:
        calls.append(1)
        if len(calls) == 1:
            gate.wait(30)  # the first run is slow (a recorder probing its last segment)
        return ["sleep", "300"]

    managed = ManagedProcess("slow-args", make_args, on_start=children.append,
                             stall_after_s=1000)
    managed.start()
    try:
        wait_for(lambda: calls, 5, "the first make_args")
        managed.stop(timeout=0.1)  # gives up after 5.1 s: the old loop is still in make_args
        managed.start()
        wait_for(lambda: children, 5, "the new loop's child")
        gate.set()  # the old loop's make_args returns now
        time.sleep(1.0)  # the scenario: give the old loop time to start a child (it must not)
        assert sum(child.poll() is None for child in children) == 1
        assert sum(t.name == "slow-args" for t in threading.enumerate()) == 1
    finally:
        gate.set()
        managed.stop()
        for child in children:
            terminate(child)
    assert all_of(children, lambda child: child.poll() is not None, "children")


def test_exit_watch_works_with_a_pidfd_above_1023() -> None:
    """select() raises ValueError for fd >= 1024; a busy daemon gets there."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1100:
        pytest.skip("RLIMIT_NOFILE hard limit below 1100")
    if soft != resource.RLIM_INFINITY and soft < 1100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1100, hard))
    proc = spawn(["sh", "-c", "sleep 0.3; exit 4"])
    watch = ExitWatch(proc)
    try:
        assert watch.fd is not None
        high = os.dup2(watch.fd, 1050)
        os.close(watch.fd)
        watch.fd = high
        assert watch.wait(0.05) is None
        assert watch.wait(5.0) == 4
    finally:
        watch.close()
        terminate(proc)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_failing_on_start_stops_the_child_and_supervision_goes_on() -> None:
    """on_start raising (no thread left to start, EMFILE) once killed the supervisor thread
    and left its child running unsupervised."""
    children: list[subprocess.Popen] = []
    states: list[tuple[str, str]] = []

    def on_start(proc: subprocess.Popen) -> None:
        children.append(proc)
        raise RuntimeError("can't start new thread")

    managed = ManagedProcess("failing-on-start", lambda: ["sleep", "300"], on_start=on_start,
                             on_state=lambda s, r: states.append((s, r)),
                             backoff_min_s=0.1, backoff_cap_s=0.2)
    managed.start()
    try:
        wait_for(lambda: managed.restarts >= 3, 10, "three restarts")  # still supervising
        assert managed._thread is not None and managed._thread.is_alive()
        assert ("offline", "cannot start: can't start new thread") in states
        assert all_of(children[:-1], lambda child: child.poll() is not None, "old children")
    finally:
        managed.stop()
        for child in children:
            terminate(child)


def test_spawn_loads_nothing_between_fork_and_exec(monkeypatch) -> None:
    """prctl is looked up at import; the child only calls it (dlopen after fork in a threaded
    process risks a loader-lock deadlock). PDEATHSIG and the own process group still hold."""
    import ctypes

    def no_loading(*args, **kwargs):
        raise AssertionError("ctypes.CDLL called in spawn's child")

    monkeypatch.setattr(ctypes, "CDLL", no_loading)
    check = ("import ctypes, os; libc = ctypes.CDLL(None); sig = ctypes.c_int(); "
             "libc.prctl(2, ctypes.byref(sig), 0, 0, 0); "
             "print(sig.value, os.getpgid(0) == os.getpid())")
    proc = spawn([sys.executable, "-c", check], stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=20)
    assert out.decode().split() == [str(int(signal.SIGKILL)), "True"]
