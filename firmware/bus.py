"""The daemon's in-process event bus.

One publisher API (`publish`), many subscribers (`subscribe(Type, handler)`). A handler
receives every published message that is an instance of the type it subscribed to.

Each subscriber has its own queue and thread, so a slow one (the MQTT outbox doing an
fsync) never delays another (the recorder protecting a clip), and `publish` never
blocks the publisher: it is safe to call from GPIO callbacks and camera threads.
A handler that raises is logged and keeps receiving later messages.

Example::

    bus = EventBus()
    bus.subscribe(PanicEvent, lambda ev: print("panic!", ev.id))
    bus.start()
    bus.publish(PanicEvent(alarm_id="a1", kind="panic", phase="raised", source="button"))
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

M = TypeVar("M")
_STOP = object()


class _Subscriber:
    def __init__(self, kind: type, handler: Callable[[Any], None], name: str) -> None:
        self.kind = kind
        self.handler = handler
        self.name = name
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None
        self.errors = 0

    def run(self) -> None:
        while True:
            msg = self.queue.get()
            if msg is _STOP:
                return
            try:
                self.handler(msg)
            except Exception:
                self.errors += 1
                log.exception("bus subscriber %s failed on %r", self.name, msg)


class EventBus:
    """Thread-safe publish/subscribe by message type."""

    def __init__(self) -> None:
        self._subs: list[_Subscriber] = []
        self._lock = threading.Lock()
        self._started = False

    def subscribe(self, kind: type[M], handler: Callable[[M], None], name: str = "") -> None:
        """Call `handler(msg)` on its own thread for each published instance of `kind`."""
        sub = _Subscriber(kind, handler, name or getattr(handler, "__qualname__", "handler"))
        with self._lock:
            self._subs.append(sub)
            if self._started:
                self._start(sub)

    def publish(self, msg: object) -> None:
        """Queue `msg` for every matching subscriber; never blocks."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            if isinstance(msg, sub.kind):
                sub.queue.put(msg)

    def start(self) -> None:
        with self._lock:
            self._started = True
            for sub in self._subs:
                if sub.thread is None:
                    self._start(sub)

    def stop(self, timeout: float = 2.0) -> None:
        """Deliver what is queued, then end the subscriber threads."""
        with self._lock:
            subs = list(self._subs)
            self._started = False
        for sub in subs:
            sub.queue.put(_STOP)
        for sub in subs:
            if sub.thread is not None:
                sub.thread.join(timeout)
                sub.thread = None

    def backlog(self) -> int:
        """Messages queued and not yet handled, over all subscribers."""
        with self._lock:
            return sum(sub.queue.qsize() for sub in self._subs)

    @staticmethod
    def _start(sub: _Subscriber) -> None:
        sub.thread = threading.Thread(target=sub.run, name=f"bus:{sub.name}", daemon=True)
        sub.thread.start()
