"""The whole node (`ronda dev-node`, every area built) commanded with `ronda cmd`:
siren and arm reach the alarm area through the bus and come back as replies and
retained output state (gpiozero MockFactory pins)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mqtt_helpers import node_config, validate, write_toml

from tests.shared_broker import SharedBroker

REPO = Path(__file__).resolve().parents[2]


def ronda(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=60)


@pytest.mark.slow
def test_cmd_to_alarm_and_back(broker: SharedBroker, recorder_factory: Any,
                               tmp_path: Path) -> None:
    key = tmp_path / "op.pem"
    out = ronda("keys", "generate", "--private", str(key))
    public = re.search(r'command_keys = \["([^"]+)"\]', out.stdout).group(1)
    root = broker.root("rw05")
    cfg = node_config(tmp_path, broker, command_keys=[public])
    cfg["gpio"] = {"pin_factory": "mock", "panic": [{"pin": 17}], "siren": {"pin": 23},
                   "light": {"pin": 24}}
    config = write_toml(tmp_path / "node.toml", cfg)
    rec = recorder_factory(broker.port, f"{root}/#")
    node = subprocess.Popen([sys.executable, "-m", "firmware", "dev-node", "--config",
                             str(config)], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        rec.wait_for(lambda m: any(p == b"online" for _, p, *_ in m), 30)
        common = ["--key", str(key), "--broker", broker.url, "--prefix", broker.prefix,
                  "--json"]
        siren = ronda("cmd", "rw05", "siren", "on", "--for", "30", *common)
        assert siren.returncode == 0, siren.stdout + siren.stderr
        reply = json.loads(siren.stdout)
        validate("reply", reply)
        assert reply["ok"] and reply["action"] == "siren"
        state = rec.wait_for(lambda m: [json.loads(p) for t, p, *_ in m
                                        if t == f"{root}/outputs/siren"
                                        and json.loads(p)["state"] != "off"], 10)[-1]
        validate("output", state)
        assert state["cause"].startswith("cmd")
        off = ronda("cmd", "rw05", "siren", "off", *common)
        assert off.returncode == 0, off.stdout
        rec.wait_for(lambda m: [t for t, p, *_ in m if t == f"{root}/outputs/siren"
                                and json.loads(p)["state"] == "off"], 10)
        arm = ronda("cmd", "rw05", "arm", "disarmed", *common)
        assert arm.returncode == 0 and json.loads(arm.stdout)["ok"], arm.stdout
        snap = ronda("cmd", "rw05", "snapshot", "gate", *common)  # no such camera
        assert snap.returncode == 1 and json.loads(snap.stdout)["ok"] is False
    finally:
        assert node.stdin is not None
        node.stdin.write("quit\n")
        node.stdin.flush()
        node.wait(20)
    rec.wait_for(lambda m: m and [p for t, p, *_ in m if t.endswith("/status")][-1]
                 == b"offline", 10)
