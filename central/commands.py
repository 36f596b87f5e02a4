"""Signed commands from the console: the key, the signature, the send, the reply, the audit.

The console holds the Command Center's Ed25519 key in a file that only its user may read
(mode 0600 is checked at start: a key readable by others is refused). Signing is
`mqtt.signing.sign_command`, the node contract's own function, so a change to the signed
form reaches the console with the code. Every command is written to the audit log when it
is sent and again with the node's reply (or its absence).
"""

from __future__ import annotations

import json
import stat
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho

from central.auth import audit
from central.db import Database
from central.mqtt_client import ClientOptions, connect
from mqtt.signing import load_private_key, sign_command
from mqtt.topics import Topics


class CommandKeyError(ValueError):
    """The signing key file is missing, unreadable, not private, or not a key."""


def load_key(path: Path) -> Any:
    """The private key from a PKCS#8 PEM file that only its owner can read."""
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except OSError as exc:
        raise CommandKeyError(f"command key {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CommandKeyError(f"command key {path} is readable by others (mode "
                        f"{stat.S_IMODE(mode):04o}); chmod 600 it")
    try:
        return load_private_key(pem)
    except ValueError as exc:
        raise CommandKeyError(f"command key {path}: {exc}") from None


class Commander:
    """Signs and sends commands; waits for the reply that the ingest stores."""

    def __init__(self, db: Database, opts: ClientOptions, key_path: Path | None,
                 prefix: str = "ronda/v1", reply_timeout_s: float = 8.0) -> None:
        self.db = db
        self.opts = opts
        self.prefix = prefix
        self.reply_timeout_s = reply_timeout_s
        self.key = load_key(key_path) if key_path else None
        self.client: paho.Client | None = None
        self.lock = threading.Lock()

    def _client(self) -> paho.Client:
        with self.lock:
            if self.client is None:
                self.client = connect(ClientOptions(**{**self.opts.__dict__,
                                                       "client_id": ""}))
            return self.client

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def send(self, user: str, node: str, action: str, args: dict[str, Any],
             alarm: int | None = None) -> dict[str, Any]:
        """Sign, send, wait for the node's reply; the result the operator sees."""
        target = f"{node}/{action}"
        if self.key is None:
            audit(self.db, user, f"command.{action}", node, args, "refused: no command key")
            return {"ok": False, "message": "the console has no command key ([commands] key_file)"}
        payload = sign_command(self.key, node=node, action=action, args=args)
        with self.db.tx() as cur:
            cur.execute("INSERT INTO commands (id, node, action, args, author, sent_ts, alarm)"
                        " VALUES (?,?,?,?,?,?,?)", (payload["id"], node, action,
                                                   json.dumps(args), user, time.time(), alarm))
        try:
            info = self._client().publish(Topics(self.prefix, node).command(action),
                                          json.dumps(payload), qos=1)
            info.wait_for_publish(5)
        except (OSError, RuntimeError, ValueError) as exc:
            audit(self.db, user, f"command.{action}", target,
                  {"id": payload["id"], "args": args}, f"not sent: {exc}")
            return {"ok": False, "id": payload["id"], "message": f"broker: {exc}"}
        audit(self.db, user, f"command.{action}", target, {"id": payload["id"], "args": args},
              "sent")
        reply = self.wait_reply(payload["id"])
        if reply is None:
            result = {"ok": False, "id": payload["id"],
                      "message": f"no reply from {node} within {self.reply_timeout_s:.0f} s"}
        else:
            result = {"ok": bool(reply["ok"]), "id": payload["id"], "message": reply["message"]}
        audit(self.db, user, f"command.{action}.reply", target, {"id": payload["id"]},
              ("ok: " if result["ok"] else "failed: ") + result["message"])
        return result

    def wait_reply(self, cmd_id: str) -> dict[str, Any] | None:
        deadline = time.monotonic() + self.reply_timeout_s
        while time.monotonic() < deadline:
            row = self.db.one("SELECT ok, message FROM replies WHERE cmd_id = ? ORDER BY id"
                              " LIMIT 1", (cmd_id,))
            if row is not None:
                return row
            time.sleep(0.05)
        return None
