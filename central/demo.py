"""`ronda-central demo` (`make demo-central`): the Command Center on one machine.

A local Mosquitto, the console (`ronda-central serve`, SQLite) with a fresh operator
account, two real nodes (`ronda run` on mock pins, with positions) and a few hundred
simulated posts (`CityFleet`). It prints the console's URL and login; at 40 s it presses
the first real node's panic button so the alarm queue has something to show. Ctrl-C stops
everything.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import tomli_w

from central.devtools.fleet import MAGELANG, CityFleet
from central.mqtt_client import ClientOptions
from mqtt.signing import generate_keypair, private_key_pem

ROOT = Path(__file__).resolve().parents[1]


def _start_broker(workdir: Path) -> tuple[subprocess.Popen, int]:
    """Mosquitto as the city should run it (docs/central.md). `devtools.broker` does
    this for the node's tests, but `central` does not import `firmware`."""
    import shutil
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {workdir}/\nmax_queued_messages 0\n"
                    "set_tcp_nodelay true\nlog_dest stderr\nlog_type error\n"
                    + ("user root\n" if _root() else ""))
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    _wait_port(port)
    return proc, port


def _root() -> bool:
    import os

    return os.geteuid() == 0


def _wait_port(port: int, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def run_demo(sim_nodes: int = 300, port: int = 8080, seconds: float = 0) -> int:
    tmp = tempfile.TemporaryDirectory(prefix="ronda-central-demo-")
    work = Path(tmp.name)
    procs: list[subprocess.Popen] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        broker, mqtt_port = _start_broker(work)
        procs.append(broker)
        url = f"mqtt://127.0.0.1:{mqtt_port}"
        private, public = generate_keypair()
        key = work / "command.pem"
        key.write_bytes(private_key_pem(private))
        key.chmod(0o600)
        config = work / "central.toml"
        config.write_text(tomli_w.dumps({
            "database": {"url": f"sqlite:///{work}/central.sqlite3"},
            "mqtt": {"broker": url}, "web": {"host": "127.0.0.1", "port": port},
            "commands": {"key_file": str(key)}, "footage": {"dir": str(work / "footage")}}))
        password = secrets.token_urlsafe(9)
        cli = [sys.executable, "-m", "central", "--config", str(config)]
        subprocess.run([*cli, "user", "add", "operator", "--role", "admin"],
                       input=password + "\n", text=True, check=True, cwd=ROOT,
                       capture_output=True)
        procs.append(subprocess.Popen([*cli, "serve"], cwd=ROOT, stdout=subprocess.DEVNULL,
                                      stderr=(work / "console.log").open("ab")))
        _wait_port(port)
        nodes = []
        for i, (dlat, dlon) in enumerate(((0.004, -0.006), (-0.012, 0.009)), start=1):
            node_id = f"demo-rw{i:02d}"
            cfg = {"node": {"id": node_id, "name": f"Pos Ronda RW {i:02d} (real node)",
                            "location": [MAGELANG[0] + dlat, MAGELANG[1] + dlon],
                            "data_dir": str(work / node_id)},
                   "mqtt": {"brokers": [url], "command_keys": [public], "health_interval_s": 10},
                   "gpio": {"pin_factory": "mock", "panic": [{"pin": 17}], "siren": {"pin": 23},
                            "light": {"pin": 24}, "ack": {"pin": 27}}}
            path = work / f"{node_id}.toml"
            path.write_text(tomli_w.dumps(cfg))
            proc = subprocess.Popen([sys.executable, "-m", "firmware", "run", "--config",
                                     str(path)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=(work / f"{node_id}.log").open("ab"))
            procs.append(proc)
            nodes.append(proc)
        fleet = CityFleet(ClientOptions(broker=url), nodes=sim_nodes, rate_per_node=0.003,
                          duration_s=seconds or 7 * 86400, crash_fraction=0.05,
                          health_interval_s=30)
        threading.Thread(target=fleet.run, daemon=True).start()
        print(f"console   http://127.0.0.1:{port}/   login: operator / {password}")
        print(f"broker    {url}   ({len(nodes)} real nodes, {sim_nodes} simulated posts)")
        print(f"data      {work}")
        print("at 40 s the first real node's panic button is pressed; Ctrl-C stops the demo",
              flush=True)
        started = time.monotonic()
        pressed = False
        while not stop.wait(0.5):
            elapsed = time.monotonic() - started
            if not pressed and elapsed > 40:
                nodes[0].send_signal(signal.SIGUSR1)
                print("demo: a volunteer presses the panic button at demo-rw01", flush=True)
                pressed = True
            if seconds and elapsed > seconds:
                break
    except KeyboardInterrupt:
        pass
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        tmp.cleanup()
        print("stopped")
    return 0
