"""Sessions, CSRF tokens and login throttling.

Sessions live in memory: a daemon restart logs everyone out, which on a node that
restarts rarely is cheaper than a session table on the SD card. Each session carries its
own CSRF token; every state-changing request must send it back in ``X-CSRF-Token``
(or the ``csrf`` form field) and come from this page's own origin.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from web.users import User

COOKIE = "ronda_session"


@dataclass
class Session:
    user: User
    csrf: str
    expires: float
    created: float = field(default_factory=time.time)


class Sessions:
    """Token -> Session, expiring after `ttl_s`."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def create(self, user: User) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), time.time() + self.ttl_s)
        with self._lock:
            now = time.time()
            self._by_token = {t: s for t, s in self._by_token.items() if s.expires > now}
            self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session is None or session.expires <= time.time():
                self._by_token.pop(token, None)
                return None
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def drop_user(self, name: str) -> None:
        """End every session of `name` (the user was removed)."""
        with self._lock:
            self._by_token = {t: s for t, s in self._by_token.items() if s.user.name != name}

    def __len__(self) -> int:
        return len(self._by_token)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf, sent or "")


class Throttle:
    """Failed logins per address: after `free` failures, each further attempt must wait
    2, 4, 8 ... up to `cap_s` seconds after the last one; forgotten after `window_s`."""

    def __init__(self, free: int = 5, cap_s: float = 300.0, window_s: float = 900.0) -> None:
        self.free, self.cap_s, self.window_s = free, cap_s, window_s
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, float]] = {}  # address -> (count, last)

    def wait_s(self, address: str) -> float:
        """Seconds `address` must still wait before its next attempt (0: go ahead)."""
        with self._lock:
            count, last = self._failures.get(address, (0, 0.0))
            now = time.monotonic()
            if now - last > self.window_s:
                self._failures.pop(address, None)
                return 0.0
            if count < self.free:
                return 0.0
            return max(0.0, last + min(self.cap_s, 2.0 ** (count - self.free + 1)) - now)

    def failed(self, address: str) -> None:
        with self._lock:
            count, _ = self._failures.get(address, (0, 0.0))
            self._failures[address] = (count + 1, time.monotonic())
            if len(self._failures) > 10_000:  # a flood from many addresses: keep the newest
                oldest = sorted(self._failures.items(), key=lambda kv: kv[1][1])[:5000]
                for addr, _ in oldest:
                    self._failures.pop(addr, None)

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)
