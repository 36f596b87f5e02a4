"""The one way tests wait: poll a condition until it holds, with a deadline that names
what was awaited. Sleeping a fixed time is never the synchronisation.

    from tests.waiting import wait_for
    event = wait_for(lambda: bus.find(ObjectEvent), 10, "the object event")

Deadlines are generous (a loaded 2-core machine must not fail a test): they bound how
long a broken build hangs, they are not performance targets (those live in bench/).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.02, wake: threading.Condition | None = None) -> T:
    """Poll `predicate` until it returns something truthy and return that; raise
    AssertionError naming `what` after `timeout` seconds. With `wake` (a Condition that
    whoever changes the awaited state notifies) it is checked again at once on each
    notification, else every `interval` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        if wake is None:
            time.sleep(min(interval, left))
        else:
            with wake:  # a notification between the check and here costs one interval
                wake.wait(min(interval, left))


def all_of(items: Iterable[T], predicate: Callable[[T], Any], what: str = "items") -> bool:
    """``all(predicate(x) for x in items)`` that fails on an empty `items`: a check over
    nothing must not pass."""
    items = list(items)
    assert items, f"no {what} to check"
    return all(predicate(item) for item in items)
