"""A real Mosquitto broker on a free loopback port, owned by the caller.

Example::

    with LocalBroker() as broker:
        client.connect("127.0.0.1", broker.port)
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from drivers.process import spawn, terminate

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or next(
        (p for p in MOSQUITTO_PATHS if Path(p).exists()), None)
    if not found:
        raise FileNotFoundError("mosquitto not found: apt-get install mosquitto")
    return found


class LocalBroker:
    """Mosquitto listening on 127.0.0.1:`port`; `extra_config` lines are appended."""

    def __init__(self, port: int | None = None, extra_config: str = "",
                 persistence: bool = False) -> None:
        self.port = port or free_port()
        self.extra_config = extra_config
        self.persistence = persistence
        self._dir = tempfile.TemporaryDirectory(prefix="ronda-mosquitto-")
        self.proc = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        workdir = Path(self._dir.name)
        conf = workdir / "mosquitto.conf"
        lines = [
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        has_user = any(ln.split()[:1] == ["user"] for ln in self.extra_config.splitlines())
        if os.geteuid() == 0 and not has_user:
            # As root, Mosquitto drops to user `mosquitto`, which cannot read our 0700 temp
            # dir (persistence, TLS keys): stay root for this throwaway loopback broker.
            lines.append("user root")
        if self.extra_config and "listener" in self.extra_config:
            lines = [ln for ln in lines if not ln.startswith(("listener", "allow_anonymous"))]
        conf.write_text("\n".join(lines) + "\n" + self.extra_config + "\n")
        log = (workdir / "mosquitto.log").open("ab")
        self.proc = spawn([mosquitto_binary(), "-c", str(conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(workdir / 'mosquitto.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"mosquitto did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
