"""Daemon lifecycle over a real NOTIFY_SOCKET datagram socket, like systemd's."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import tomli_w

from firmware import config
from firmware.component import Component
from firmware.daemon import Daemon
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


class NotifyListener:
    """A bound AF_UNIX datagram socket collecting what the daemon sends, with times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.messages.append((time.monotonic(), line))

    def lines(self, prefix: str, since: float = 0.0) -> list[str]:
        return [m for t, m in list(self.messages) if m.startswith(prefix) and t >= since]

    def wait_for(self, prefix: str, timeout: float = 10.0, since: float = 0.0) -> None:
        wait_for(lambda: self.lines(prefix, since), timeout,
                 f"{prefix} (got {list(self.messages)[-5:]})")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


class Heart(Component):
    """Beats every 50 ms unless frozen (a component stuck in a call)."""

    name = "heart"
    stall_after_s = 0.6

    def __init__(self) -> None:
        super().__init__()
        self.frozen = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.05):
            if not self.frozen.is_set():
                self.beat()


class Crasher(Component):
    """Raises soon after every start, until told to behave."""

    name = "crasher"

    def __init__(self) -> None:
        super().__init__()
        self.starts = 0
        self.behave = threading.Event()

    def run(self) -> None:
        self.starts += 1
        if not self.behave.is_set():
            raise RuntimeError("boom")
        while not self.stopping.wait(0.05):
            self.beat()


def node_config(tmp_path: Path) -> dict:
    return {
        "node": {"id": "test-node", "data_dir": str(tmp_path / "state")},
        "mqtt": {"enabled": False},
        "recorder": {"enabled": False, "path": str(tmp_path / "rec")},
        "gpio": {"enabled": False},
    }


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    listener = NotifyListener(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # ping every 0.1 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield listener
    listener.close()


def test_ready_watchdog_stall_and_stopping(tmp_path: Path, notify_socket: NotifyListener) -> None:
    heart = Heart()
    daemon = Daemon(config.parse(node_config(tmp_path)), extra=[heart])
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        notify_socket.wait_for("READY=1")
        ready_at = notify_socket.messages[0][0]
        notify_socket.wait_for("WATCHDOG=1", since=ready_at)
        wait_for(lambda: len(notify_socket.lines("WATCHDOG=1")) >= 3, 5, "3 watchdog pings")

        heart.frozen.set()
        time.sleep(heart.stall_after_s + 0.6)  # stalled by now: pings must have stopped
        quiet_from = time.monotonic()
        time.sleep(1.5)  # on purpose: a quiet window longer than the ping interval
        assert notify_socket.lines("WATCHDOG=1", since=quiet_from) == []
        assert daemon.supervisor.stalled() == ["heart"]

        heart.frozen.clear()
        notify_socket.wait_for("WATCHDOG=1", since=time.monotonic(), timeout=3)
    finally:
        daemon.request_stop()
        runner.join(10)
    assert not runner.is_alive()
    assert notify_socket.lines("STOPPING=1")
    assert notify_socket.lines("STATUS=")


def test_crashing_component_is_restarted_with_backoff(tmp_path: Path) -> None:
    crasher = Crasher()
    daemon = Daemon(config.parse(node_config(tmp_path)), extra=[crasher])
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        # crashed, restarted (<= 1 s), crashed, restarted (<= 2 s)
        wait_for(lambda: crasher.starts >= 3, 10, "two restarts")
        crasher.behave.set()
        wait_for(lambda: crasher.running, 10, "the crasher running")
        health = daemon.health()
        assert health["components"]["crasher"]["crashes"] >= 2
        assert "boom" in health["last_error"]
        assert runner.is_alive()  # the daemon itself never went down
    finally:
        daemon.request_stop()
        runner.join(10)


def test_sigterm_stops_the_real_daemon_within_5_s(tmp_path: Path,
                                                  notify_socket: NotifyListener) -> None:
    path = tmp_path / "ronda.toml"
    path.write_text(tomli_w.dumps(node_config(tmp_path)))
    proc = subprocess.Popen([sys.executable, "-m", "firmware", "run", "--config", str(path)],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        notify_socket.wait_for("READY=1", timeout=30)
        notify_socket.wait_for("WATCHDOG=1", timeout=5)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=5)
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, proc.stderr.read()
    notify_socket.wait_for("STOPPING=1", timeout=1)


def test_health_file_in_the_runtime_directory(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Under systemd (RuntimeDirectory=ronda) the daemon keeps /run/ronda/health.json fresh."""
    import json

    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    daemon = Daemon(config.parse(node_config(tmp_path)))
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        path = tmp_path / "health.json"
        wait_for(path.exists, 10, "health.json")
        health = json.loads(path.read_text())
    finally:
        daemon.request_stop()
        runner.join(10)
    assert health["node"] == "test-node"
    assert health["version"]
    assert "system" in health["components"]


def test_an_area_that_fails_to_build_does_not_take_the_alarm_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken MQTT area (say a corrupt outbox) is a fault in health, not a dead node."""
    import firmware.wiring.mqtt

    def broken(ctx):
        raise RuntimeError("database disk image is malformed")

    monkeypatch.setattr(firmware.wiring.mqtt, "build", broken)
    cfg = node_config(tmp_path)
    cfg["mqtt"] = {"enabled": True}
    cfg["gpio"] = {"pin_factory": "mock", "panic": [{"pin": 17}], "siren": {"pin": 23}}
    daemon = Daemon(config.parse(cfg))
    try:
        names = [c.name for c in daemon.components]
        assert "alarm" in names and "mqtt" not in names
        health = daemon.health()
        assert "malformed" in health["faults"]["mqtt"]
        assert "malformed" in health["last_error"]
    finally:
        daemon.supervisor.stop()
