"""Replies to commands (mqtt/replies.py): exactly one per command, a timeout reply when
nobody answers, and command ids that survive a restart in the outbox."""

from __future__ import annotations

import logging
import queue
import time

import pytest

from mqtt.outbox import Outbox
from mqtt.replies import NOT_AVAILABLE, persistent_replay_guard, reply_once


def test_reply_once_sends_the_first_reply_only(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[tuple] = []
    reply = reply_once("c-1", lambda *a: sent.append(a), timeout_s=60.0)
    with caplog.at_level(logging.WARNING, logger="mqtt.replies"):
        reply(True, "done", {"n": 1})
        reply(False, "late")
    assert sent == [(True, "done", {"n": 1})]
    assert "second reply to command c-1 ignored" in caplog.text


def test_no_reply_within_the_timeout_gives_an_error_reply() -> None:
    sent: queue.SimpleQueue = queue.SimpleQueue()
    reply = reply_once("c-2", lambda *a: sent.put(a), timeout_s=0.05)
    assert sent.get(timeout=10) == (False, NOT_AVAILABLE, {})
    reply(True, "too late")  # the owner answering after the timeout is dropped
    assert sent.empty()


def test_replay_guard_remembers_ids_over_a_restart(tmp_path) -> None:
    now = time.time()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    guard = persistent_replay_guard(outbox, window_s=120)
    assert guard.check_and_remember("c-3", now, now)
    outbox.close()
    again = persistent_replay_guard(Outbox(tmp_path / "outbox.sqlite3"), window_s=120)
    assert not again.check_and_remember("c-3", now, now)
    assert again.check_and_remember("c-4", now, now)
