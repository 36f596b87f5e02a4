"""`ronda demo` runs the whole node and Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_and_ctrl_c_leaves_no_process(tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="200", XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware", "demo", "--workdir", str(tmp_path / "demo")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)  # its own process group, like a terminal's foreground job
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            text = "".join(lines)
            if "status" in text and "online" in text and "health" in text:
                break
            time.sleep(0.2)
        text = "".join(lines)
        assert proc.poll() is None, text
        assert "status" in text and "online" in text, text
        names: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the recorder starts once the camera is probed
            family = psutil.Process(proc.pid).children(recursive=True)
            names = {p.name() for p in family}
            if {"mosquitto", "ffmpeg"} <= names:
                break
            time.sleep(0.2)
        assert {"mosquitto", "ffmpeg"} <= names, names  # broker, recorder's ffmpeg
        time.sleep(1.0)  # let the detection decoder start too, so it is checked below
        family = psutil.Process(proc.pid).children(recursive=True)

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(5)
    time.sleep(0.5)
    alive = [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [(p.pid, p.name()) for p in alive]
    assert "stopped" in "".join(lines)
