"""Helpers of the web tests: one real node (`ronda run`: RTSP test camera, recorder,
alarm on mock pins, the web page over HTTPS) shared by the web tests, users made with
`ronda users add`, and HTTP sessions logged in as each role."""

from __future__ import annotations

import http.cookiejar
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devtools.broker import free_port
from devtools.rtsp_camera import RtspTestCamera
from drivers.process import spawn, terminate
from tests import waiting
from web.users import FILENAME, UserStore

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"vera": ("viewer", "lihat-saja-1"), "ops": ("operator", "operator-kuat-2"),
             "adi": ("admin", "admin-kuat-3")}
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE  # the node's own self-signed certificate


def wait_for(condition, timeout: float = 30.0, what: str = "condition", interval: float = 0.2):
    """tests.waiting.wait_for, polling less often: a browser or HTTP round trip per poll."""
    return waiting.wait_for(condition, timeout, what, interval)


def node_config(workdir: Path, camera_url: str, port: int) -> str:
    return f"""
[node]
id = "web-rw03"
name = "Pos Ronda RW 03"
data_dir = "{workdir / 'state'}"
[mqtt]
enabled = false
[[cameras]]
name = "gang"
kind = "rtsp"
url = "{camera_url}"
fps = 15
[recorder]
path = "{workdir / 'recordings'}"
segment_s = 2
[gpio]
pin_factory = "mock"
panic = [{{ pin = 17, name = "pos" }}]
ack = {{ pin = 27 }}
siren = {{ pin = 23 }}
light = {{ pin = 24 }}
[alarm]
siren_max_s = 60
[web]
enabled = true
host = "127.0.0.1"
port = {port}
max_viewers = 6
"""


def cli(capsys: pytest.CaptureFixture, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """`ronda ARGS` in this process (the subprocess start costs seconds on a busy machine):
    (exit code, stdout, stderr)."""
    import io
    import logging

    from firmware.cli import main

    capsys.readouterr()
    old, handlers, level = sys.stdin, logging.root.handlers[:], logging.root.level
    sys.stdin = io.StringIO(stdin)
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdin = old
        logging.root.handlers[:] = handlers  # main() logs to the captured stream: undo it
        logging.root.setLevel(level)
    out = capsys.readouterr()
    return code, out.out, out.err


def ronda(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware", *args], input=stdin, text=True,
                          capture_output=True, cwd=ROOT, timeout=60)


class Client:
    """A logged-in (or not) HTTP client of the page, with its cookie jar."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=INSECURE),
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())
        self.csrf = ""

    def request(self, method: str, path: str, body: bytes | dict | list | None = None,
                headers: dict | None = None, csrf: bool = True) -> tuple[int, dict, bytes]:
        headers = {"Origin": self.base, **(headers or {})}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        if csrf and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers=headers)
        try:
            with self.opener.open(req, timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, method: str, path: str, body: dict | None = None, **kw) -> tuple[int, dict]:
        status, _, data = self.request(method, path, body, **kw)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, {"raw": data[:200]}

    def login(self, name: str, password: str | None = None) -> int:
        password = password if password is not None else PASSWORDS[name][1]
        form = urllib.parse.urlencode({"name": name, "password": password}).encode()
        status, _, _ = self.request("POST", "/login", form,
                                    {"Content-Type": "application/x-www-form-urlencoded"})
        if status == 303:
            self.csrf = self.json("GET", "/api/me")[1]["csrf"]
        return status

    def cookie(self):
        return next((c for c in self.jar if c.name == "ronda_session"), None)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class WebNode:
    """The running node and how to reach it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.camera = RtspTestCamera(path="gang", size=(640, 360), fps=15, seconds=20).start()
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.config = workdir / "ronda.toml"
        self.config.write_text(node_config(workdir, self.camera.url, self.port))
        done = ronda("users", "add", "ops", "--role", "operator", "--password-stdin",
                     "--config", str(self.config), stdin=PASSWORDS["ops"][1] + "\n")
        assert done.returncode == 0, done.stderr
        users = UserStore(workdir / "state" / FILENAME)  # the others straight in the file
        for name, (role, password) in PASSWORDS.items():
            if name != "ops":
                users.add(name, role, password)
        self.log = workdir / "node.log"
        self.proc = spawn([sys.executable, "-m", "firmware", "run", "--config",
                           str(self.config)], cwd=ROOT, stdout=self.log.open("wb"),
                          stderr=subprocess.STDOUT)
        wait_for(self._listening, 60, "the web page to answer")
        self.recordings = workdir / "recordings"

    def _listening(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"node exited: {self.log.read_text()[-2000:]}")
        try:
            status, _, _ = Client(self.base).request("GET", "/login")
        except (urllib.error.URLError, OSError):
            return False
        return status == 200

    def client(self, name: str | None = None) -> Client:
        client = Client(self.base)
        if name is not None:
            assert client.login(name) == 303
        return client

    def segments(self) -> list[tuple]:
        from recorder.index import Index

        path = self.recordings / Index.FILENAME
        if not path.exists():
            return []
        index = Index(path, readonly=True)
        try:
            return [(s.start, s.end) for s in index.segments("gang")]
        finally:
            index.close()

    def close(self) -> None:
        terminate(self.proc, timeout=10)
        self.camera.close()
