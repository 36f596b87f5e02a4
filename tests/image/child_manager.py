"""`ChildManager`: what systemd does for a Type=notify unit, in-process, for the tests
(containers and CI run no systemd). It starts the unit's command as a child with its own
NOTIFY_SOCKET and reports `activating` until the child sends READY=1, `active` after,
`failed` once it exits. It follows `firmware.provision.services.ServiceManager`, the
interface `ronda update` drives.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from drivers.process import spawn, terminate
from firmware.provision.services import ServiceState


class ChildManager:
    """A one-unit service manager: `command(unit)` is the ExecStart to run (re-read at every
    restart, so a switched `current` link takes effect, as with systemd)."""

    def __init__(self, command: Callable[[str], list[str]], env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self._command = command
        self._env = env or {}
        self._log = log
        self._proc: subprocess.Popen | None = None
        self._ready = False
        self._status = ""
        self._starts = 0
        self._dir = tempfile.TemporaryDirectory(prefix="ronda-svc-")
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def restart(self, unit: str) -> None:
        self.stop()
        sock_path = os.path.join(self._dir.name, f"notify-{self._starts}")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(sock_path)
        self._sock.settimeout(0.2)
        self._ready, self._status = False, ""
        env = {**os.environ, **self._env, "NOTIFY_SOCKET": sock_path}
        out = self._log.open("ab") if self._log else subprocess.DEVNULL
        self._proc = spawn(self._command(unit), env=env, stdout=out, stderr=out)
        if self._log:
            out.close()  # type: ignore[union-attr]
        self._starts += 1
        threading.Thread(target=self._listen, args=(self._sock,), daemon=True).start()

    def _listen(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                for line in data.splitlines():
                    if line == "READY=1":
                        self._ready = True
                    elif line.startswith("STATUS="):
                        self._status = line[7:]

    def state(self, unit: str) -> ServiceState:
        proc = self._proc
        if proc is None:
            return ServiceState("inactive")
        if proc.poll() is not None:
            return ServiceState("failed" if proc.returncode else "inactive",
                                status=self._status)
        with self._lock:
            return ServiceState("active" if self._ready else "activating", proc.pid,
                                status=self._status)

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL) and close the notify socket."""
        if self._proc is not None:
            terminate(self._proc, 5.0)
            self._proc = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def describe(self) -> str:
        return shlex.join(self._command("ronda")) if self._proc else "stopped"
