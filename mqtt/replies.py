"""Replies to remote commands, and the replay guard that survives a restart.

Every accepted command gets exactly one reply: `reply_once` wraps the sender so that a
second reply is logged and dropped, and a command nobody answers within `timeout_s` gets
an error reply (`NOT_AVAILABLE`) from the node. `persistent_replay_guard` is the
`ReplayGuard` whose command ids are kept in the outbox's database, so a command replayed
after a restart is still refused.

Neither knows the daemon: replies go out through a ``send(ok, message, data)`` callback;
``firmware/wiring/mqtt.py`` connects it to the link.

Example::

    reply = reply_once("c-42", lambda ok, msg, data: print(ok, msg, data), timeout_s=5.0)
    reply(True, "done")   # sent
    reply(False, "late")  # logged and dropped
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from mqtt.commands import ReplayGuard
from mqtt.outbox import Outbox

log = logging.getLogger(__name__)

NOT_AVAILABLE = "not available on this node"


def reply_once(cmd_id: str | None, send: Callable[[bool, str, dict[str, Any]], None],
               timeout_s: float) -> Callable[..., None]:
    """A ``reply(ok, message="", data=None)`` for command `cmd_id` that calls `send` once:
    later calls are logged and ignored, and no call within `timeout_s` sends
    ``(False, NOT_AVAILABLE, {})``."""
    lock = threading.Lock()
    done = [False]

    def reply(ok: bool, message: str = "", data: dict[str, Any] | None = None) -> None:
        with lock:
            if done[0]:
                log.warning("mqtt: second reply to command %s ignored", cmd_id)
                return
            done[0] = True
        timer.cancel()
        send(ok, message, data or {})

    timer = threading.Timer(timeout_s, lambda: reply(False, NOT_AVAILABLE))
    timer.daemon = True
    timer.start()
    return reply


def persistent_replay_guard(outbox: Outbox, window_s: float) -> ReplayGuard:
    """A `ReplayGuard` for commands accepted within `window_s` of their `ts`, whose ids
    are kept in `outbox` and loaded from it. Never raises: ids that cannot be loaded are
    logged, ids that cannot be stored are counted in ``persist_errors``."""
    keep_s = 2 * window_s + 10
    # Old ids are pruned from the database with every new one (the memory prunes
    # itself), so the table stays as small as the window while the node runs.
    replay = ReplayGuard(keep_s, persist=lambda cmd_id, ts: outbox.remember_command(
        cmd_id, ts, expire_before=time.time() - keep_s))
    try:
        replay.load(outbox.seen_commands(since=time.time() - keep_s))
    except Exception:  # the outbox logs and degrades; this must not stop the area
        log.exception("mqtt: remembered command ids not loaded")
    return replay
