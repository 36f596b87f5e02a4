"""Failed sign-ins per client address: after `max_failures` within `window_s`, refuse (429).

In memory, per console process: a restart forgets, and several console processes behind one
load balancer each count on their own (so an address gets up to N x `max_failures` tries).
Behind a reverse proxy the address is the proxy's unless uvicorn trusts its forwarded
headers (it does for a proxy on 127.0.0.1; docs/central.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque


class LoginThrottle:
    """Counts failures per address in a sliding window."""

    def __init__(self, max_failures: int = 5, window_s: float = 300.0,
                 max_addresses: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self.lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self.failures.get(address)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self.failures[address]
        return times

    def retry_after(self, address: str, now: float | None = None) -> float:
        """Seconds until `address` may try again (0: now)."""
        now = time.monotonic() if now is None else now
        with self.lock:
            times = self._recent(address, now)
            if len(times) < self.max_failures:
                return 0.0
            return times[-self.max_failures] + self.window_s - now

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self.lock:
            times = self.failures.setdefault(address, deque(maxlen=self.max_failures))
            times.append(now)
            self.failures.move_to_end(address)
            while len(self.failures) > self.max_addresses:  # bounded memory under a flood
                self.failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        with self.lock:
            self.failures.pop(address, None)
