"""Service managers `ronda update` talks to: systemd on a node, or a child process.

`SystemdManager` drives `systemctl`. `ChildManager` does what systemd does for a
Type=notify unit, in-process, for machines where systemd does not run (containers, CI,
tests): it starts the unit's command as a child with its own NOTIFY_SOCKET and reports
`activating` until the child sends READY=1, `active` after, `failed` once it exits.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from drivers.process import spawn, terminate


@dataclass(frozen=True)
class ServiceState:
    """What the manager says about the unit right now."""

    active: str  # active | activating | deactivating | inactive | failed
    main_pid: int = 0
    restarts: int = 0
    status: str = ""  # the unit's STATUS= line

    @property
    def running(self) -> bool:
        return self.active == "active"


class ServiceManager(Protocol):
    """Restart a unit and tell its state."""

    def restart(self, unit: str) -> None: ...

    def state(self, unit: str) -> ServiceState: ...


class SystemdManager:
    """`systemctl`: restart without blocking (we wait ourselves, with our own deadline)."""

    def __init__(self, run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> None:
        self._run = run

    def restart(self, unit: str) -> None:
        self._run(["systemctl", "reset-failed", unit], capture_output=True, check=False)
        self._run(["systemctl", "restart", "--no-block", unit], capture_output=True,
                  check=True, timeout=30)

    def state(self, unit: str) -> ServiceState:
        out = self._run(["systemctl", "show", unit, "--property=ActiveState,MainPID,"
                         "NRestarts,StatusText"], capture_output=True, text=True,
                        check=False, timeout=30).stdout
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return ServiceState(props.get("ActiveState", "inactive"),
                            int(props.get("MainPID") or 0), int(props.get("NRestarts") or 0),
                            props.get("StatusText", ""))


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
