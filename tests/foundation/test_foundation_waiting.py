"""The shared wait helper (tests/waiting.py) fails loudly, never silently."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from tests.waiting import all_of, wait_for


def test_wait_for_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert wait_for(lambda: next(counter) >= 3 and "done", 5, "the counter") == "done"


def test_wait_for_names_what_timed_out() -> None:
    with pytest.raises(AssertionError, match="waiting for the broker"):
        wait_for(lambda: False, 0.05, "the broker")


def test_a_check_over_nothing_fails() -> None:
    assert all_of([1, 2], lambda x: x > 0)
    assert not all_of([1, -2], lambda x: x > 0)
    with pytest.raises(AssertionError, match="no frames to check"):
        all_of([], lambda x: x > 0, "frames")


def test_wait_for_wakes_on_a_notification_not_on_the_interval() -> None:
    wake, got = threading.Condition(), []

    def arrive() -> None:
        with wake:
            got.append("message")
            wake.notify_all()

    threading.Timer(0.05, arrive).start()
    started = time.monotonic()
    assert wait_for(lambda: got, 30, "the message", interval=20, wake=wake) == ["message"]
    # woken by the notification, not after the 20 s interval (or the 30 s deadline)
    assert time.monotonic() - started < 15
