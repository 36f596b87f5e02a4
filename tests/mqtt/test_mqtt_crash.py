"""Outage + kill -9: 1,000 events produced while the broker is down, the daemon killed
and restarted meanwhile, all delivered in seq order once the broker is back.

The node is a real process (`ronda dev-node`: the daemon with this config's wiring plus
synthetic events requested on stdin). Mosquitto keeps the Command Center subscriber's
persistent session over its restart, as a city broker would.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mqtt_helpers import node_config, validate, write_toml

from devtools.broker import LocalBroker

ROOT = "ronda/v1/rw05"
PERSISTENT_BROKER = "max_queued_messages 0\nuser root"
REPO = Path(__file__).resolve().parents[2]


class NodeProcess:
    """`ronda dev-node` as a child; `request(n)` asks for n events and waits until stored."""

    def __init__(self, config: Path, run_id: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware", "dev-node", "--config", str(config),
             "--run-id", run_id], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def request(self, count: int, timeout: float = 60.0) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"events {count}\n")
        self.proc.stdin.flush()
        return self.lines.get(timeout=timeout)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def quit(self) -> int:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        return self.proc.wait(15)


def _status(messages: list) -> list[bytes]:
    return [p for t, p, retained, _ in messages if t == f"{ROOT}/status" and not retained]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_outage_kill9_restart_delivers_all_in_order(recorder_factory: Any,
                                                    tmp_path: Path) -> None:
    with LocalBroker(extra_config=PERSISTENT_BROKER, persistence=True) as broker:  # stopped
        config = write_toml(tmp_path / "node.toml", node_config(
            tmp_path, [broker.url], reconnect_min_s=0.2, reconnect_max_s=1.0))
        cc = recorder_factory(broker.port, [f"{ROOT}/events", f"{ROOT}/status"],
                              client_id="command-center", clean=False)
        first = NodeProcess(config, "a")
        try:
            cc.wait_for(lambda m: _status(m)[-1:] == [b"online"], 30)
            broker.stop()
            assert first.request(600) == "stored 600"
            first.kill9()                       # during the outage, 600 events queued
            second = NodeProcess(config, "b")
            assert second.request(400) == "stored 400"
            broker.start()
            cc.wait_for(lambda m: len({p for t, p, *_ in m if t.endswith("/events")}) >= 1000,
                        90)
            cc.wait_for(lambda m: _status(m)[-1:] == [b"online"], 10)
            events = cc.json("/events")
            for event in events[:50]:
                validate("event", event)
            ids = {e["id"] for e in events}
            assert ids == {f"dev-a-{i:06d}" for i in range(600)} | \
                {f"dev-b-{i:06d}" for i in range(400)}
            first_seen: dict[str, int] = {}
            for event in events:
                assert first_seen.setdefault(event["id"], event["seq"]) == event["seq"], \
                    "a duplicate carries the same id and seq"
            order = list(first_seen.values())
            assert order == sorted(order) == list(range(1, 1001)), "seq order, no gap"

            second.kill9()                      # connected this time: the last will
            cc.wait_for(lambda m: _status(m)[-1:] == [b"offline"], 30)
            third = NodeProcess(config, "c")
            cc.wait_for(lambda m: _status(m)[-1:] == [b"online"], 30)
            assert third.request(1) == "stored 1"
            cc.wait_for(lambda m: any(b"dev-c-000000" in p for _, p, *_ in m), 15)
            assert json.loads(cc.payloads("/events")[-1])["seq"] == 1001
            assert third.quit() == 0
            cc.wait_for(lambda m: _status(m)[-1:] == [b"offline"], 10)
        finally:
            for node in ("first", "second", "third"):
                proc = locals().get(node)
                if proc is not None and proc.proc.poll() is None:
                    proc.kill9()
