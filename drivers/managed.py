"""A child process kept alive: restarted with capped exponential backoff when it exits or
stops making progress.

The owner says what progress is: it calls `beat()` whenever the child did something
useful (a segment closed, a frame decoded). No beat for `stall_after_s` and the child is
killed and restarted. State changes reach `on_state(state, reason)`:

- ``online``: the child made progress since it was (re)started;
- ``offline``: it exited or stalled; `reason` is the last line it wrote to stderr.

Between restarts it waits with `support.backoff` (capped exponential, full jitter, never
less than `backoff_min_s`), so a camera with a wrong password costs one ffmpeg start per
`backoff_cap_s` or so, not a busy loop. An optional
`ready()` check (a cheap TCP connect to the camera) cuts that wait short when the
source was seen *down* and has just come back: footage resumes within a second of the
camera's return instead of up to `backoff_cap_s` later. A source that answers but makes
the child fail (wrong password, bad codec) does not cut the wait: `ready()` was never
False, so the full backoff applies.

Example::

    proc = ManagedProcess("cam1-rec", lambda: ["ffmpeg", ...], on_state=print)
    proc.start()
    ...
    proc.beat()    # from whatever watches the child's output
    ...
    proc.stop()
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import subprocess
import threading
import time
from collections.abc import Callable

from drivers.process import spawn, terminate
from support.backoff import Backoff

log = logging.getLogger(__name__)


class ExitWatch:
    """Waits for a child to exit while sleeping in the kernel.

    `Popen.wait(timeout)` polls about 28 times a second; with a recorder and a decoder per
    camera that polling alone cost more CPU than the ffmpegs' own stream copy. A pidfd
    (Linux 5.3+) becomes readable when the child exits, so `poll` can sleep until then.
    Elsewhere it falls back to `Popen.wait`.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.fd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            with contextlib.suppress(OSError):
                self.fd = pidfd_open(proc.pid)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the child is still running after `timeout` s."""
        if self.fd is None:
            try:
                return self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        # poll, not select: select() refuses an fd >= 1024 (ValueError), and a busy daemon
        # (many cameras, sockets, segment files) gets there
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        readable = poller.poll(max(0, int(timeout * 1000)))
        return self.proc.poll() if readable else None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ManagedProcess:
    """Run `make_args()` as a child forever (until `stop`), restarting it with backoff."""

    def __init__(
        self,
        name: str,
        make_args: Callable[[], list[str]],
        *,
        on_state: Callable[[str, str], None] | None = None,
        on_start: Callable[[subprocess.Popen], None] | None = None,
        stall_after_s: float = 20.0,
        backoff_min_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        stdout: int | None = subprocess.DEVNULL,
        redact: Callable[[str], str] = lambda s: s,
        ready: Callable[[], bool | None] | None = None,
        ready_poll_s: float = 0.5,
        env: dict[str, str] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.name = name
        self._make_args = make_args
        self._on_state = on_state or (lambda state, reason: None)
        self._on_start = on_start
        self.stall_after_s = stall_after_s
        self.backoff_min_s = backoff_min_s
        self.backoff_cap_s = backoff_cap_s
        self._stdout = stdout
        self._redact = redact
        self._ready = ready
        self.env = env  # the child's environment (None: ours)
        # when given, restart delays come from it instead of one made from backoff_min/cap_s
        self._backoff = backoff
        self.ready_poll_s = ready_poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = 0.0
        self._online = False
        self.proc: subprocess.Popen | None = None
        self.state = "starting"
        self.reason = ""
        self.restarts = 0
        self.starts = 0
        self.last_delay_s = 0.0
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)

    def start(self) -> None:
        # A fresh stop event per run: a loop from an earlier run that `stop` gave up
        # waiting for (a slow `make_args`, a child slow to die) keeps its own event, which
        # stays set, so it winds down instead of coming back next to the new one.
        self._stop = stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(stop,), name=self.name,
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        proc = self.proc
        if proc is not None:
            terminate(proc, timeout)
        if self._thread is not None:
            self._thread.join(timeout + 5)
            self._thread = None

    def beat(self) -> None:
        """The child made progress."""
        self._last_beat = time.monotonic()
        if not self._online:
            self._online = True
            self._set_state("online", "")

    def health(self) -> dict:
        return {"state": self.state, "reason": self.reason, "restarts": self.restarts}

    @property
    def pid(self) -> int | None:
        """The running child's pid, or None between runs."""
        proc = self.proc
        return proc.pid if proc is not None else None

    # ----------------------------------------------------------------------------------
    def _set_state(self, state: str, reason: str) -> None:
        if (state, reason) == (self.state, self.reason):
            return
        self.state, self.reason = state, reason
        try:
            self._on_state(state, reason)
        except Exception:
            log.exception("%s: state callback failed", self.name)

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = self._redact(raw.decode(errors="replace").rstrip())
            if line:
                self.stderr_tail.append(line)

    def _loop(self, stop: threading.Event) -> None:
        # full jitter above the floor: never a busy loop, and children of many nodes (or
        # cameras) that failed together do not restart in step
        backoff = self._backoff or Backoff(
            self.backoff_min_s, max(self.backoff_min_s, self.backoff_cap_s),
            min_s=self.backoff_min_s)
        while not stop.is_set():
            try:
                reason = self._run_once(stop)
            except Exception as exc:  # a bug here must not leave a child unsupervised
                log.exception("%s: supervising the child failed", self.name)
                proc = self.proc
                if proc is not None:
                    with contextlib.suppress(Exception):
                        terminate(proc)
                    self.proc = None
                reason = f"supervisor error: {exc}"
            if stop.is_set():
                break
            if self._online:  # it worked for a while: start the backoff afresh
                backoff.reset()
            self._online = False
            self._set_state("offline", reason)
            self.restarts += 1
            delay = backoff.next_delay()
            log.warning("%s: %s; restarting in %.1f s", self.name, reason, delay)
            self.last_delay_s = delay
            if self._wait_backoff(delay, stop):
                break

    def _wait_backoff(self, delay: float, stop: threading.Event) -> bool:
        """Wait `delay` s, or less when `ready()` saw the source down then up; True = stop."""
        if self._ready is None:
            return stop.wait(delay)
        end = time.monotonic() + delay
        seen_down = False
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return False
            if stop.wait(min(self.ready_poll_s, left)):
                return True
            try:
                ready = self._ready()
            except Exception:
                log.exception("%s: ready check failed", self.name)
                ready = None
            if ready is False:
                seen_down = True
            elif ready and seen_down:
                log.info("%s: source is back; restarting now", self.name)
                return False

    def _run_once(self, stop: threading.Event) -> str:
        self.stderr_tail.clear()
        self.starts += 1
        try:
            args = self._make_args()
            if stop.is_set():  # stopped while make_args ran (it may be slow): no child
                return ""
            proc = spawn(args, stdout=self._stdout, stderr=subprocess.PIPE, env=self.env)
        except Exception as exc:  # a bad make_args must not end supervision either
            if not isinstance(exc, (OSError, ValueError)):
                log.exception("%s: cannot start", self.name)
            return f"cannot start: {exc}"
        self.proc = proc
        reader = threading.Thread(target=self._read_stderr, args=(proc,), daemon=True)
        try:
            reader.start()
            if self._on_start is not None:
                self._on_start(proc)
        except Exception as exc:  # no thread left (EMFILE, thread limit), a failing callback
            # the child would run unsupervised: stop it, and count this as a failed start
            log.exception("%s: setting up the child failed; stopping it", self.name)
            terminate(proc)
            if reader.is_alive():
                reader.join(2)
            if self.proc is proc:
                self.proc = None
            return f"cannot start: {exc}"
        self._last_beat = time.monotonic()
        reason = ""
        exited = ExitWatch(proc)
        try:
            while not stop.is_set():
                code = exited.wait(0.5)
                if code is None:
                    if time.monotonic() - self._last_beat > self.stall_after_s:
                        reason = f"no progress for {self.stall_after_s:.0f} s"
                        break
                    continue
                reader.join(2)
                last = self.stderr_tail[-1] if self.stderr_tail else ""
                reason = f"exited with code {code}" + (f": {last}" if last else "")
                break
        finally:
            exited.close()
        terminate(proc)
        reader.join(2)
        if self.proc is proc:  # not a newer run's child
            self.proc = None
        return reason
