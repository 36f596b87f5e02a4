"""The shared wait helper (tests/waiting.py) fails loudly, never silently."""

from __future__ import annotations

import itertools

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
