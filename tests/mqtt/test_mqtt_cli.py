"""`ronda keys`, `ronda cmd`, `ronda watch` run as real commands against a real node."""

from __future__ import annotations

import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from mqtt_helpers import BridgeNode, node_config

from devtools.broker import free_port
from firmware.events import Command, ObjectEvent, Snapshot
from tests.shared_broker import SharedBroker

REPO = Path(__file__).resolve().parents[2]


def ronda(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware", *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)


def test_keys_cmd_and_watch(broker: SharedBroker, tmp_path: Path) -> None:
    key = tmp_path / "op.pem"
    out = ronda("keys", "generate", "--private", str(key))
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = re.search(r'command_keys = \["([^"]+)"\]', out.stdout).group(1)
    assert ronda("keys", "generate", "--private", str(key)).returncode == 1  # no overwrite
    stranger = tmp_path / "stranger.pem"
    assert ronda("keys", "generate", "--private", str(stranger)).returncode == 0

    cfg = node_config(tmp_path, broker, command_keys=[public], command_timeout_s=1.0)
    with BridgeNode(cfg) as node:
        node.bus.publish(Snapshot(camera="gate", jpeg=b"\xff\xd8old"))  # retained, stale

        def cameras_owner(cmd: Command) -> None:  # what the cameras area does
            if cmd.action == "snapshot":
                node.bus.publish(Snapshot(camera=cmd.args["camera"], jpeg=b"\xff\xd8new"))
                cmd.reply(True, "snapshot of gate", {"camera": cmd.args["camera"]})

        node.bus.subscribe(Command, cameras_owner, name="test-cameras")
        node.bus.publish(ObjectEvent(camera="gate", track_id="1", phase="start",
                                     label="person", score=0.8))
        on = ["--broker", broker.url, "--prefix", broker.prefix]
        common = ["--key", str(key), *on, "--timeout", "8"]
        ping = ronda("cmd", "rw05", "ping", *common)
        assert ping.returncode == 0 and "rw05 ping: ok: pong" in ping.stdout, ping
        picture = tmp_path / "gate.jpg"
        snap = ronda("cmd", "rw05", "snapshot", "gate", "--save", str(picture), *common)
        assert snap.returncode == 0 and picture.read_bytes() == b"\xff\xd8new", snap
        siren = ronda("cmd", "rw05", "siren", "on", "--for", "5", *common)
        assert siren.returncode == 1 and "not available on this node" in siren.stdout, siren
        forged = ronda("cmd", "rw05", "ping", "--key", str(stranger), *on)
        assert forged.returncode == 1 and "bad signature" in forged.stdout
        assert ronda("cmd", "rw05", "siren", "loud", *common).returncode == 2
        assert ronda("cmd", "rw99", "ping", "--key", str(key), *on,
                     "--timeout", "1").returncode == 3
        assert ronda("cmd", "rw05", "ping", "--key", str(key), "--broker",
                     f"mqtt://127.0.0.1:{free_port()}").returncode == 4
        watched = ronda("watch", *on, "--once", "1.5")
    assert watched.returncode == 0, watched.stderr
    line = next(ln for ln in watched.stdout.splitlines() if "rw05" in ln)
    assert "online" in line and "person" not in line  # events are not retained
    assert "object" not in line


def test_help_texts_teach(capsys: pytest.CaptureFixture[str]) -> None:
    from firmware.cli import main

    # through `ronda` itself: cmd, watch, fleet-sim and dev-node are launched tools
    for command in ("keys", "cmd", "watch", "fleet-sim", "dev-node"):
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        text = capsys.readouterr().out
        assert exited.value.code == 0 and "example" in text and len(text) > 300, command
