"""Outgoing webhooks: each dispatch is POSTed to its agency, signed, until delivered.

The body is JSON; headers `X-Ronda-Timestamp` (Unix seconds) and `X-Ronda-Signature:
sha256=<hex>`, the HMAC-SHA256 with the agency's secret of `timestamp + "." + body`
(the Stripe/GitHub scheme: the receiver recomputes it and refuses an old timestamp). A
dispatch stays in the `dispatches` table until the agency answers 2xx; failed tries are
retried with the project's backoff (`support.backoff`), also after a console restart.

Receiver check, in Python::

    mac = hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(f"sha256={mac}", header) and abs(time.time() - ts) < 300
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import urllib.error
import urllib.request

from central.auth import audit
from central.db import Database
from central.settings import CentralSettings, read_secret
from support.backoff import Backoff

log = logging.getLogger(__name__)


def signature(secret: bytes, ts: int, body: bytes) -> str:
    """The `X-Ronda-Signature` header value."""
    return "sha256=" + hmac.new(secret, f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


class WebhookSender:
    """A thread that delivers pending dispatches (`wake()` after a new one)."""

    def __init__(self, db: Database, settings: CentralSettings, timeout_s: float = 5.0,
                 cap_s: float = 300.0) -> None:
        self.db = db
        self.settings = settings
        self.timeout_s = timeout_s
        self.cap_s = cap_s
        self.event = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="central-webhooks", daemon=True)

    def start(self) -> WebhookSender:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.event.set()
        self.thread.join(10)

    def wake(self) -> None:
        self.event.set()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                wait = self.deliver_due()
            except Exception:  # database hiccup: try again shortly
                log.exception("webhook delivery failed")
                wait = 2.0
            self.event.wait(wait)
            self.event.clear()

    def deliver_due(self) -> float:
        """Try every due dispatch once; the seconds until the next one is due."""
        now = time.time()
        rows = self.db.query("SELECT id, agency, body, attempts FROM dispatches WHERE"
                             " delivered_ts IS NULL AND next_try <= ? ORDER BY id", (now,))
        for row in rows:
            self._try(row)
        nxt = self.db.scalar("SELECT min(next_try) FROM dispatches WHERE delivered_ts IS NULL")
        return 60.0 if nxt is None else max(0.05, min(60.0, float(nxt) - time.time()))

    def _lease(self, dispatch: int) -> bool:
        """Take the dispatch for one try (two consoles never POST the same one at once)."""
        now = time.time()
        with self.db.tx() as cur:
            cur.execute("UPDATE dispatches SET next_try = ? WHERE id = ? AND delivered_ts IS NULL"
                        " AND next_try <= ?", (now + self.timeout_s + 30, dispatch, now))
            return cur.rowcount == 1

    def _try(self, row: dict) -> None:
        if not self._lease(row["id"]):
            return
        agency = self.settings.agency(row["agency"])
        attempts = int(row["attempts"]) + 1
        if agency is None or not agency.webhook_url:
            self._update(row["id"], attempts, None, None, "no webhook configured")
            return
        body = row["body"].encode()
        ts = int(time.time())
        headers = {"Content-Type": "application/json", "X-Ronda-Timestamp": str(ts),
                   "User-Agent": "ronda-central"}
        if agency.webhook_secret_file:
            secret = read_secret(agency.webhook_secret_file).encode()
            headers["X-Ronda-Signature"] = signature(secret, ts, body)
        request = urllib.request.Request(agency.webhook_url, data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                status = resp.status
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (OSError, ValueError) as exc:
            error = str(getattr(exc, "reason", exc))
        if error is None:
            self._update(row["id"], attempts, time.time(), None, None)
            audit(self.db, "system", "webhook", agency.id, {"dispatch": row["id"],
                                                             "attempts": attempts}, "delivered")
            return
        backoff = Backoff(1.0, self.cap_s)
        backoff.attempts = min(attempts - 1, 16)
        self._update(row["id"], attempts, None, time.time() + backoff.next_delay(), error)
        log.warning("webhook to %s failed (try %d): %s", agency.id, attempts, error)

    def _update(self, dispatch: int, attempts: int, delivered: float | None,
                next_try: float | None, error: str | None) -> None:
        with self.db.tx() as cur:
            cur.execute("UPDATE dispatches SET attempts = ?, delivered_ts = ?, next_try = ?,"
                        " last_error = ? WHERE id = ?",
                        (attempts, delivered, next_try, error, dispatch))
