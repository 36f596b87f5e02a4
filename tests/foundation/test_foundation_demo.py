"""`ronda demo` runs the whole node and Ctrl-C leaves no process behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil

from devtools.demo import MODEL
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def names_of(processes: list[psutil.Process]) -> list[str]:
    """Names of those still there (one may exit while we look)."""
    names = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            names.append(process.name())
    return names


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
        wait_for(lambda: proc.poll() is not None or all(
            word in "".join(lines) for word in ("status", "online", "health")), 90,
            "the demo's status lines")
        text = "".join(lines)
        assert proc.poll() is None, text
        assert "status" in text and "online" in text, text

        def family() -> list[psutil.Process]:
            return psutil.Process(proc.pid).children(recursive=True)

        # the broker, and the recorder's ffmpeg (it starts once the camera is probed)
        wait_for(lambda: {"mosquitto", "ffmpeg"} <= set(names_of(family())), 30,
                 "mosquitto and ffmpeg")
        if MODEL.is_file():  # the detection decoder too, so that it is checked below
            wait_for(lambda: names_of(family()).count("ffmpeg") >= 2, 30, "two ffmpeg")
        family_at_run = family()

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(5)

    def alive() -> list[psutil.Process]:
        found = []
        for p in family_at_run:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
            except psutil.NoSuchProcess:
                pass
        return found

    # the kernel delivers PDEATHSIG asynchronously: give the children a moment to go
    try:
        wait_for(lambda: not alive(), 5, "every child gone")
    except AssertionError:
        raise AssertionError(f"left behind: {names_of(alive())}") from None
    assert "stopped" in "".join(lines)
