"""Service managers `ronda update` talks to: `SystemdManager` drives `systemctl`.

`ServiceManager` is what `ronda update` needs of one; the tests, where systemd cannot run,
pass `tests/image/child_manager.py`'s `ChildManager` instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


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
