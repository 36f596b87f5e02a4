"""No command shows a Python traceback; usage errors show the sub-command's usage;
journald keeps priorities even without systemd-python; doctor's output is not preceded
by gpiozero's fallback warnings; the test camera refuses a busy port."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from firmware import logs

ROOT = Path(__file__).resolve().parents[2]


def ronda(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


@pytest.mark.parametrize("args", [
    ("firstboot", "--check", "--boot", "/nonexistent"),
    ("detect", "--model", "/etc/passwd", "x"),
])
def test_no_traceback_reaches_the_user(args):
    result = ronda(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and result.stderr.strip()


def test_an_unexpected_error_is_one_line(monkeypatch, capsys):
    from firmware import cli
    from firmware.commands import doctor as doctor_cmd

    def boom(_args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(doctor_cmd, "run", boom)
    assert cli.main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "ronda doctor: error: RuntimeError: disk on fire" in err and "Traceback" not in err


def test_a_mistyped_option_shows_the_subcommands_usage():
    result = ronda("update", "--bogus")
    assert result.returncode == 2
    assert "usage: ronda update" in result.stderr and "--bogus" in result.stderr


def test_journal_lines_keep_their_priority_without_systemd_python(monkeypatch, capsys):
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    monkeypatch.setitem(sys.modules, "systemd.journal", None)  # import fails
    logs.setup("info")
    try:
        logging.getLogger("ronda.test").warning("siren relay did not answer")
        logging.getLogger("ronda.test").info("all well")
    finally:
        logs.setup("info")  # back to plain stderr for the other tests
        monkeypatch.delenv("JOURNAL_STREAM")
    err = capsys.readouterr().err.splitlines()
    assert "<4>ronda.test: siren relay did not answer" in err
    assert "<6>ronda.test: all well" in err


def test_doctor_output_is_not_preceded_by_gpiozero_warnings(tmp_path):
    cfg = tmp_path / "ronda.toml"
    cfg.write_text('[node]\nid = "rw05"\n[mqtt]\nenabled = false\n[gpio]\npanic = [{ pin = 17 }]\n'
                   f'[recorder]\npath = "{tmp_path}"\n')
    env = {k: v for k, v in os.environ.items() if k != "GPIOZERO_PIN_FACTORY"}
    result = subprocess.run([sys.executable, "-m", "firmware", "doctor", "-c", str(cfg),
                             "--skip", "service,cameras,storage,model,mqtt,clock,power"],
                            cwd=ROOT, text=True, capture_output=True, timeout=120,
                            env={**env, "PYTHONPATH": str(ROOT)})
    assert "gpio" in result.stdout
    assert "Warning" not in result.stderr and "PinFactoryFallback" not in result.stderr


def test_test_camera_on_a_busy_port_fails_clearly():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([str(ROOT / "scripts/test-camera"), "--port", str(port)],
                                cwd=ROOT, text=True, capture_output=True, timeout=120)
    assert result.returncode == 1
    assert f"port {port} is in use" in result.stderr and "Traceback" not in result.stderr
