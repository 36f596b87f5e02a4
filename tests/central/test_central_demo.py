"""`ronda-central demo` (`make demo-central`): prints the console's URL and a login that
works, brings up two real nodes and simulated posts, and leaves nothing behind on SIGTERM."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from devtools.broker import free_port
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_prints_a_working_login_and_stops_cleanly():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "central", "demo", "--sim-nodes", "20",
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = proc.stdout.readline()
        found = re.search(r"(http://\S+)\s+login: (\S+) / (\S+)", line)
        assert found, line
        url, user, password = found.groups()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 4  # broker, console, two nodes
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        body = urllib.parse.urlencode({"username": user, "password": password}).encode()
        opener.open(f"{url}login", data=body)
        assert any(c.name == "ronda_session" for c in jar)

        def nodes() -> list:
            return json.load(opener.open(f"{url}api/nodes"))

        rows = wait_for(lambda: [n for n in nodes() if n["lat"] is not None] if len(
            nodes()) >= 22 else None, 60, "2 real nodes and 20 simulated posts")
        assert {"demo-rw01", "demo-rw02"} <= {n["id"] for n in rows}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
