"""The whole daemon (`ronda run`, every area the config enables) with mock pins, seen from
a Command Center subscriber: a press (SIGUSR1 presses a mock panic button), kill -9 while
the siren sounds, restart: the interrupted alarm is reported and the outputs are off."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from alarm_kit import wait_for
from paho.mqtt.enums import CallbackAPIVersion

from drivers.process import spawn, terminate

ROOT = Path(__file__).resolve().parents[2]
NODE = "daemon-rw07"


def write_config(tmp_path: Path, broker_url: str, prefix: str = "ronda/v1") -> Path:
    path = tmp_path / "ronda.toml"
    path.write_text(f"""
[node]
id = "{NODE}"
data_dir = "{tmp_path / 'state'}"
[mqtt]
brokers = ["{broker_url}"]
prefix = "{prefix}"
reconnect_min_s = 0.2
reconnect_max_s = 1.0
[recorder]
path = "{tmp_path / 'recordings'}"
[gpio]
pin_factory = "mock"
panic = [{{ pin = 17, name = "pos" }}]
ack = {{ pin = 27 }}
siren = {{ pin = 23 }}
light = {{ pin = 24 }}
[alarm]
siren_max_s = 120
""")
    return path


class CommandCenter:
    def __init__(self, port: int, prefix: str = "ronda/v1") -> None:
        self.messages: list[tuple[str, dict | bytes, bool]] = []
        self.lock = threading.Lock()
        ready = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/{NODE}/#", qos=1)
        self.client.on_subscribe = lambda *a: ready.set()  # SUBACK: nothing missed from now
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert ready.wait(15), "the command center did not subscribe"

    def _message(self, _c, _u, msg) -> None:
        try:
            body = json.loads(msg.payload)
        except ValueError:
            body = bytes(msg.payload)
        with self.lock:
            self.messages.append((msg.topic.split(f"{NODE}/", 1)[1], body, bool(msg.retain)))

    def docs(self, topic: str) -> list[dict]:
        with self.lock:
            return [b for t, b, _ in self.messages if t == topic and isinstance(b, dict)]

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_node(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return spawn([sys.executable, "-m", "firmware", "run", "--config", str(config)],
                 cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_daemon_killed_during_an_alarm_reports_it_after_restart(tmp_path, broker):
    config = write_config(tmp_path, broker.url, broker.prefix)
    cc = CommandCenter(broker.port, broker.prefix)
    node = start_node(config)
    try:
        wait_for(lambda: cc.docs("outputs/siren"), 30, "the node's first output state")
        node.send_signal(signal.SIGUSR1)  # press the mock panic button
        raised = wait_for(lambda: [d for d in cc.docs("events") if d["type"] == "panic"], 15,
                          "the panic event")[0]
        wait_for(lambda: [d for d in cc.docs("outputs/siren") if d["state"] == "panic"], 10,
                 "siren on")
        wait_for(lambda: (tmp_path / "state" / "alarm.json").exists(), 10, "alarm.json")
        node.send_signal(signal.SIGKILL)
        node.wait(10)
        terminate(node)
        node = start_node(config)
        recovered = wait_for(lambda: [d for d in cc.docs("events")
                                      if d.get("phase") == "recovered"], 30, "recovered")[0]
        assert recovered["alarm_id"] == raised["alarm_id"] and recovered["source"] == "restart"
        off = wait_for(lambda: [d for d in cc.docs("outputs/siren")
                                if d["state"] == "off" and d["cause"] == "start"], 10,
                       "the siren announced off")[0]
        assert off["until"] is None
        assert node.poll() is None
    finally:
        terminate(node, timeout=8)
        cc.stop()
    assert node.returncode == 0  # SIGTERM: an orderly stop


def test_signals_press_the_mock_buttons(make_node):
    saved = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGUSR2)
    try:
        node = make_node()
        os.kill(os.getpid(), signal.SIGUSR1)
        wait_for(lambda: node.pin("siren").state, 2, "the siren after SIGUSR1")
        assert node.panel.buttons[0].presses == 1
        os.kill(os.getpid(), signal.SIGUSR2)
        wait_for(lambda: node.controller.alarm is None, 2, "the ack after SIGUSR2")
        assert node.pin("siren").state is False
        node.stop()
        node.started = False
        os.kill(os.getpid(), signal.SIGUSR1)  # a closed panel ignores it
    finally:
        signal.signal(signal.SIGUSR1, saved[0])
        signal.signal(signal.SIGUSR2, saved[1])
