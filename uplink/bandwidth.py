"""One upload cap shared by live pushes and uploads, live first.

A live push cannot be slowed down (it is stream-copied: the camera decides the bitrate),
so it *reserves* its bitrate: the measured one once it runs, the configured estimate
before. A push that would not fit beside the pushes already running is refused with the
figures. Uploads get what live leaves (`upload_kbps()`), re-read every chunk, so a live
push that starts mid-upload slows the upload down at once.

>>> b = Bandwidth(cap_kbps=5000)
>>> b.reserve("cam1", 4000)
''
>>> b.reserve("cam2", 4000)
'the cap of 5000 kbps is taken: live uses 4000 kbps, cam2 needs 4000 kbps'
>>> b.upload_kbps()
1000
>>> b.release("cam1"); b.upload_kbps()
5000
"""

from __future__ import annotations

import threading
import time


class Bandwidth:
    """The shared cap (`cap_kbps` 0: no cap)."""

    def __init__(self, cap_kbps: int = 0) -> None:
        self.cap_kbps = cap_kbps
        self._live: dict[str, int] = {}
        self._lock = threading.Lock()

    def live_kbps(self) -> int:
        with self._lock:
            return sum(self._live.values())

    def reserve(self, key: str, kbps: int) -> str:
        """Reserve `kbps` for live push `key`; '' if it fits, else why not."""
        with self._lock:
            others = sum(v for k, v in self._live.items() if k != key)
            if self.cap_kbps and others + kbps > self.cap_kbps:
                return (f"the cap of {self.cap_kbps} kbps is taken: live uses {others} kbps, "
                        f"{key} needs {kbps} kbps")
            self._live[key] = kbps
            return ""

    def update(self, key: str, kbps: int) -> None:
        """The push's measured bitrate (kept even above the cap: it is already running)."""
        with self._lock:
            if key in self._live:
                self._live[key] = kbps

    def release(self, key: str) -> None:
        with self._lock:
            self._live.pop(key, None)

    def upload_kbps(self) -> int | None:
        """What uploads may use now: None = unlimited, 0 = nothing (live takes it all)."""
        if not self.cap_kbps:
            return None
        return max(0, self.cap_kbps - self.live_kbps())


class Pacer:
    """Paces one sender to `bandwidth.upload_kbps()`, re-read on every chunk."""

    def __init__(self, bandwidth: Bandwidth, clock=time.monotonic, sleep=time.sleep) -> None:
        self.bandwidth = bandwidth
        self.clock = clock
        self.sleep = sleep
        self._due = clock()  # when the next byte may go

    def wait(self, nbytes: int, stop: threading.Event | None = None) -> None:
        """Sleep as long as sending `nbytes` takes at the allowed rate."""
        while True:
            kbps = self.bandwidth.upload_kbps()
            if kbps is None:
                self._due = self.clock()
                return
            if kbps > 0:
                break
            if stop is not None and stop.wait(0.5):  # live takes everything: wait
                return
            if stop is None:
                self.sleep(0.5)
        now = self.clock()
        self._due = max(self._due, now - 0.5) + nbytes * 8 / (kbps * 1000)
        if self._due > now:
            if stop is not None:
                stop.wait(self._due - now)
            else:
                self.sleep(self._due - now)
