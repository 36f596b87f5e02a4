#!/usr/bin/env python3
"""Daemon start-to-READY time, idle RSS and idle CPU, against a bare Python baseline.

The node runs as `ronda run` with MQTT to a local Mosquitto, mock GPIO, no cameras; READY
is read from a NOTIFY_SOCKET like systemd's. Baseline: a Python process that imports
nothing of ours (`python -c ...` sleeping), measured in the same run.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import tomli_w

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from devtools.broker import LocalBroker

ROUNDS = 5
IDLE_S = 10.0


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    print(f"{name}\t{value:.3g}\t{unit}\t{note}", flush=True)


def start_to_ready(cmd: list[str], env: dict[str, str],
                   sock: socket.socket) -> tuple[float, subprocess.Popen]:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        data = sock.recv(4096)
        if b"READY=1" in data:
            return time.monotonic() - started, proc


def idle_figures(proc: subprocess.Popen) -> tuple[float, float]:
    p = psutil.Process(proc.pid)
    cpu0 = sum(p.cpu_times()[:2])
    time.sleep(IDLE_S)
    cpu = sum(p.cpu_times()[:2]) - cpu0
    return p.memory_info().rss / 2**20, cpu / IDLE_S * 100


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker:
        tmpdir = Path(tmp)
        config = tmpdir / "ronda.toml"
        config.write_text(tomli_w.dumps({
            "node": {"id": "bench", "data_dir": str(tmpdir / "state")},
            "mqtt": {"brokers": [broker.url]},
            "recorder": {"path": str(tmpdir / "rec")},
            "gpio": {"pin_factory": "mock", "panic": [{"pin": 17}], "siren": {"pin": 23}},
        }))
        sock_path = tmpdir / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(60)
        env = dict(os.environ, NOTIFY_SOCKET=str(sock_path))
        baseline_cmd = [sys.executable, "-c",
                        "from systemd import daemon; import time; daemon.notify('READY=1');"
                        " time.sleep(60)"]
        node_cmd = [sys.executable, "-m", "firmware", "run", "--config", str(config)]
        results = {}
        for label, cmd in (("baseline", baseline_cmd), ("node", node_cmd)):
            times = []
            for i in range(ROUNDS):
                elapsed, proc = start_to_ready(cmd, env, sock)
                times.append(elapsed)
                if i == ROUNDS - 1:
                    results[label] = (times, *idle_figures(proc))
                proc.terminate()
                proc.wait(10)
        base_t, base_rss, base_cpu = results["baseline"]
        node_t, node_rss, node_cpu = results["node"]
        emit("start_to_ready_median", statistics.median(node_t), "s",
             f"baseline python+notify {statistics.median(base_t):.3f} s")
        emit("idle_rss", node_rss, "MiB", f"baseline python {base_rss:.1f} MiB")
        emit("idle_cpu", node_cpu, "% of a core", f"over {IDLE_S:.0f} s; baseline {base_cpu:.2f} %")


if __name__ == "__main__":
    main()
