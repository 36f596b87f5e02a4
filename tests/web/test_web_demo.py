"""`ronda demo` prints the page's URL and a login that works."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from web_kit import Client, wait_for

ROOT = Path(__file__).resolve().parents[2]


def test_demo_prints_the_page_and_a_working_login(tmp_path: Path) -> None:
    env = dict(os.environ, COLUMNS="200")
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware", "demo", "--workdir", str(tmp_path / "demo")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                     daemon=True).start()
    try:
        found = wait_for(lambda: re.search(r"(https://127\.0\.0\.1:\d+)/\s+log in as (\S+) "
                                           r"with password (\S+)", "".join(lines)),
                         60, "the web line of the demo")
        base, name, password = found.groups()
        client = Client(base)

        def logged_in() -> bool:
            try:
                return client.login(name, password) == 303
            except OSError:
                return False

        wait_for(logged_in, 60, "a login with the printed password")
        status, me = client.json("GET", "/api/me")
        assert status == 200 and me["role"] == "operator" and me["cameras"] == ["gang"]
        assert Client(base).login(name, "not-the-password") == 401
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wait_for(lambda: "stopped" in "".join(lines), 10, "the demo to say it stopped")
