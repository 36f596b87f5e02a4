"""A console process, a real node process and a webhook receiver for the end-to-end tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import tomli_w

from devtools.broker import free_port
from mqtt.signing import generate_keypair, private_key_pem
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class WebhookReceiver:
    """An agency's system: refuses the first `fail_first` POSTs, then checks the HMAC."""

    def __init__(self, secret: bytes, fail_first: int = 1) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.attempts = 0
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                ts = self.headers["X-Ronda-Timestamp"]
                mac = hmac.new(receiver.secret, f"{ts}.".encode() + body,
                               hashlib.sha256).hexdigest()
                good = hmac.compare_digest(f"sha256={mac}",
                                           self.headers.get("X-Ronda-Signature", ""))
                if good and abs(time.time() - int(ts)) < 300:
                    receiver.received.append(json.loads(body))
                    self.send_response(204)
                else:
                    self.send_response(401)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ronda"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_console(tmp: Path, db_url: str, broker_url: str, webhook: WebhookReceiver | None,
                  tiles_url: str = "", extra: dict[str, Any] | None = None) -> tuple[Path, str]:
    """central.toml, a 0600 command key, and users; returns (config, public key)."""
    private, public = generate_keypair()
    key = tmp / "command.pem"
    key.write_bytes(private_key_pem(private))
    key.chmod(0o600)
    secret = tmp / "damkar.secret"
    secret.write_text((webhook.secret.decode() if webhook else "x") + "\n")
    config = {
        "database": {"url": db_url},
        "mqtt": {"broker": broker_url, "client_id": f"central-{tmp.name[-8:]}"},
        "web": {"host": "127.0.0.1", "tiles_url": tiles_url, "offline_after_s": 60},
        "commands": {"key_file": str(key), "reply_timeout_s": 8},
        "agencies": [
            {"id": "psc119", "name": "PSC 119", "phone": "119", "kinds": ["panic", "medical"]},
            {"id": "damkar", "name": "Damkar", "phone": "113", "kinds": ["fire", "panic"],
             "webhook_url": webhook.url if webhook else "",
             "webhook_secret_file": str(secret)},
        ],
    }
    config.update(extra or {})
    path = tmp / "central.toml"
    path.write_text(tomli_w.dumps(config))
    for name, role, extra in (("ops", "operator", []), ("boss", "admin", []),
                              ("damkar", "viewer", ["--agency", "damkar"]),
                              ("view", "viewer", [])):
        subprocess.run([sys.executable, "-m", "central", "--config", str(path), "user", "add",
                        name, "--role", role, *extra], input=f"{name}-password\n", text=True,
                       check=True, cwd=ROOT, env=ENV, capture_output=True)
    return path, public


class Console:
    """`ronda-central serve` as a child process on a free port."""

    def __init__(self, config: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "central", "--config", str(config), "serve", "--port",
                 str(self.port)], cwd=ROOT, env=ENV, stdout=out, stderr=out)
        self.log = log
        import socket

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"console exited: {log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(listening, 30, "the console to listen")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class RealNode:
    """`python -m firmware run` on mock pins; SIGUSR1 presses its panic button."""

    def __init__(self, tmp: Path, node_id: str, broker_url: str, public: str,
                 location: list[float] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        cfg = {
            "node": {"id": node_id, "name": f"Pos {node_id}",
                     "data_dir": str(tmp / node_id / "state")},
            "mqtt": {"brokers": [broker_url], "command_keys": [public], "health_interval_s": 2,
                     "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
            "gpio": {"pin_factory": "mock", "panic": [{"pin": 17}], "siren": {"pin": 23},
                     "light": {"pin": 24}, "ack": {"pin": 27}},
        }
        if location:
            cfg["node"]["location"] = location
        cfg.update(extra or {})  # e.g. cameras, recorder, uplink
        path = tmp / f"{node_id}.toml"
        path.write_text(tomli_w.dumps(cfg))
        self.log = tmp / f"{node_id}.log"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "firmware", "run", "--config",
                                          str(path)], cwd=ROOT, env=ENV, stdout=out, stderr=out)

    def press_panic(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
