"""What the supervisor runs: long-lived parts of the node with a thread of their own.

A component reports *progress* with `beat()`; the supervisor stops the systemd watchdog
pings when one has not beaten for `stall_after_s`, and restarts one whose thread died
of an exception, with backoff. Subclasses implement `run()`, which loops until
`self.stopping` is set, and may override `health()` and `close()`.

Example::

    class Clock(Component):
        name = "clock"

        def run(self) -> None:
            while not self.stopping.wait(1.0):
                self.beat()
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


class Component:
    """Base class of supervised parts. One instance is started and stopped many times."""

    name: str = "component"
    stall_after_s: float = 30.0

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = time.monotonic()
        self.error: BaseException | None = None

    # -- for subclasses --------------------------------------------------------------
    def run(self) -> None:
        """The component's loop; returns when `self.stopping` is set."""
        self.stopping.wait()

    def close(self) -> None:
        """Release what `run` holds (processes, sockets). Called after every run."""

    def health(self) -> dict[str, Any]:
        """Figures for the health report."""
        return {}

    def summary(self) -> str:
        """A few words for systemd's STATUS= line; empty to say nothing."""
        return ""

    def beat(self) -> None:
        """Report progress."""
        self._last_beat = time.monotonic()

    # -- for the supervisor ----------------------------------------------------------
    def start(self) -> None:
        self.stopping.clear()
        self.error = None
        self.beat()
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.1f s", self.name, timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stalled_for(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self._last_beat

    def _main(self) -> None:
        try:
            self.run()
        except Exception as exc:
            self.error = exc
            log.exception("component %s crashed", self.name)
        finally:
            try:
                self.close()
            except Exception:
                log.exception("component %s failed to close", self.name)
