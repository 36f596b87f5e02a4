"""Checking a remote command before anything acts on it.

`CommandVerifier.verify(topic_action, payload)` returns a `Verdict`: either accepted
(signed by a configured key, fresh, not seen before, a known action with valid
arguments) or refused with a reason meant for the reply and the log. The checks run
cheapest first and the signature before anything that remembers state, so garbage
cannot fill the replay memory or squat a future command id.

Payload (JSON object, at most `max_bytes`)::

    {"id": "c-42", "ts": 1764290000, "action": "siren", "args": {"state": "on"},
     "key_id": "3f2a...", "sig": "<base64 Ed25519 signature>"}

The signed bytes are described in `mqtt.signing`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mqtt.signing import key_id, load_public_key, signed_bytes

log = logging.getLogger(__name__)

ACTIONS = ("siren", "light", "snapshot", "arm", "ack", "ping", "live", "live-stop", "fetch")
MAX_ID_LEN = 128
FIELDS = {"id", "ts", "action", "args", "key_id", "sig"}
SPAN = re.compile(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d")
MAX_FOR_S = 7200.0
MAX_LIVE_TTL_S = 600.0  # a `live` push lasts at most this; renewed by sending it again
MAX_URL_LEN = 2048


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one command."""

    ok: bool
    reason: str = ""
    id: str | None = None
    action: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    key_id: str = ""


class ReplayGuard:
    """Remembers command ids for as long as their `ts` could still be accepted.

    `persist(id, ts)` / `load()` hooks let the durable store keep ids over a restart.
    """

    def __init__(self, keep_s: float, capacity: int = 100_000,
                 persist: Callable[[str, float], None] | None = None) -> None:
        self.keep_s = keep_s
        self.capacity = capacity
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._persist = persist
        self._lock = threading.Lock()
        self.persist_errors = 0  # ids kept in memory only (disk full, read-only, damaged)

    def load(self, items: list[tuple[str, float]]) -> None:
        """Seed with ids remembered before a restart."""
        with self._lock:
            for cmd_id, ts in items:
                self._seen[cmd_id] = ts

    def check_and_remember(self, cmd_id: str, ts: float, now: float) -> bool:
        """True if `cmd_id` is new (and now remembered), False if it was seen."""
        with self._lock:
            self._expire(now)
            if cmd_id in self._seen:
                return False
            self._seen[cmd_id] = ts
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        if self._persist is not None:
            try:
                self._persist(cmd_id, ts)
            except Exception as exc:  # a full or read-only disk must not eat a valid command
                self.persist_errors += 1
                log.error("command id %r remembered in memory only (a replay after a "
                          "restart would not be refused): %s", cmd_id, exc)
        return True

    def _expire(self, now: float) -> None:
        for cmd_id in [k for k, ts in self._seen.items() if ts < now - self.keep_s]:
            del self._seen[cmd_id]


class RefusalLog:
    """Refused commands logged at a bounded rate: the first `burst` of each `window_s`
    one line each, then one summary line per window with the count by reason (so a flood
    of garbage costs a few log lines a minute, and is still visible).

    `refused(text, reason)` logs or counts; the summary is written by a timer at the end
    of the window, or by `flush()`.
    """

    def __init__(self, burst: int = 5, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self.logger = logger
        self._lock = threading.Lock()
        self._start = -float("inf")
        self._logged = 0
        self._held: dict[str, int] = {}
        self._timer: threading.Timer | None = None

    def refused(self, text: str, reason: str) -> None:
        """One refused command: `text` is the full log line, `reason` its short kind."""
        with self._lock:
            now = self.clock()
            if now - self._start >= self.window_s:
                self._summary_locked()
                self._start, self._logged = now, 0
            if self._logged < self.burst:
                self._logged += 1
                self.logger.warning("%s", text)
                return
            self._held[reason] = self._held.get(reason, 0) + 1
            if self._timer is None and self.clock is time.monotonic:
                self._timer = threading.Timer(max(0.0, self._start + self.window_s - now),
                                              self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write the summary of the refusals held back so far (if any)."""
        with self._lock:
            self._summary_locked()

    def _summary_locked(self) -> None:
        self._timer = None
        if not self._held:
            return
        total = sum(self._held.values())
        reasons = ", ".join(f"{n} x {r}" for r, n in sorted(self._held.items(),
                                                             key=lambda kv: -kv[1]))
        self.logger.warning("%d more command(s) refused in the last %.0f s, not logged one "
                            "by one: %s", total, self.window_s, reasons)
        self._held = {}


def short_reason(reason: str) -> str:
    """A refusal reason without its variable parts, for the summary line."""
    head = re.split(r"[:(\[]", reason, maxsplit=1)[0]
    return re.sub(r"[+-]?\d+(\.\d+)?", "N", head).strip()[:60] or "other"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _unknown(args: dict[str, Any], known: set[str]) -> str:
    extra = sorted(str(k) for k in set(args) - known)
    return f"unknown argument(s) {extra}" if extra else ""


def _short_text(value: Any, limit: int = 64) -> bool:
    return isinstance(value, str) and 0 < len(value) <= limit


def _check_switch(extra: str, allowed: tuple[str, ...] | None) -> Callable[[dict[str, Any]], str]:
    """siren/light: state on|off, for_s seconds (with on), and the owner's `extra` option."""
    def check(args: dict[str, Any]) -> str:
        problem = _unknown(args, {"state", "for_s", extra})
        if problem:
            return problem
        if args.get("state") not in ("on", "off"):
            return "`state` must be 'on' or 'off'"
        if "for_s" in args:
            if args["state"] != "on":
                return "`for_s` only goes with state 'on'"
            if not _number(args["for_s"]) or not 0 < args["for_s"] <= MAX_FOR_S:
                return f"`for_s` must be a number of seconds in (0, {MAX_FOR_S:.0f}]"
        if extra in args:
            value = args[extra]
            if allowed is not None and value not in allowed:
                return f"`{extra}` must be one of {', '.join(allowed)}"
            if not _short_text(value, 32):
                return f"`{extra}` must be a name of 1 to 32 characters"
        return ""
    return check


def _check_only_string(name: str) -> Callable[[dict[str, Any]], str]:
    def check(args: dict[str, Any]) -> str:
        problem = _unknown(args, {name})
        if problem:
            return problem
        if name in args and not _short_text(args[name]):
            return f"`{name}` must be a string of 1 to 64 characters"
        return ""
    return check


def _check_snapshot(args: dict[str, Any]) -> str:
    problem = _check_only_string("camera")({k: v for k, v in args.items() if k != "timeout"})
    if problem:
        return problem
    if "timeout" in args and (not _number(args["timeout"]) or not 0 < args["timeout"] <= 10):
        return "`timeout` must be a number of seconds in (0, 10]"
    return ""


def _check_arm(args: dict[str, Any]) -> str:
    problem = _unknown(args, {"mode", "schedule"})
    if problem:
        return problem
    if args.get("mode") not in ("armed", "disarmed", "schedule"):
        return "`mode` must be 'armed', 'disarmed' or 'schedule'"
    if "schedule" in args:
        spans = args["schedule"]
        if (not isinstance(spans, list) or len(spans) > 16
                or not all(isinstance(x, str) and SPAN.fullmatch(x) for x in spans)):
            return "`schedule` must be a list of up to 16 'HH:MM-HH:MM' spans"
    return ""


def _check_none(args: dict[str, Any]) -> str:
    return f"takes no arguments, got {sorted(str(k) for k in args)}" if args else ""


def _check_live(args: dict[str, Any]) -> str:
    problem = _unknown(args, {"camera", "stream", "ttl_s"})
    if problem:
        return problem
    if not _short_text(args.get("camera")):
        return "`camera` must be a string of 1 to 64 characters"
    if "stream" in args and args["stream"] not in ("main", "sub"):
        return "`stream` must be 'main' or 'sub'"
    if "ttl_s" in args and (not _number(args["ttl_s"])
                            or not 0 < args["ttl_s"] <= MAX_LIVE_TTL_S):
        return (f"`ttl_s` must be a number of seconds in (0, {MAX_LIVE_TTL_S:.0f}]; "
                "send `live` again to renew")
    return ""


def _check_live_stop(args: dict[str, Any]) -> str:
    problem = _unknown(args, {"camera"})
    if problem:
        return problem
    return "" if _short_text(args.get("camera")) else \
        "`camera` must be a string of 1 to 64 characters"


def _check_fetch(args: dict[str, Any]) -> str:
    problem = _unknown(args, {"camera", "start", "end", "upload_url"})
    if problem:
        return problem
    if not _short_text(args.get("camera")):
        return "`camera` must be a string of 1 to 64 characters"
    if not (_number(args.get("start")) and _number(args.get("end"))):
        return "`start` and `end` must be Unix seconds"
    if args["end"] <= args["start"]:
        return "`end` must be after `start`"
    url = args.get("upload_url")
    if not isinstance(url, str) or not 0 < len(url) <= MAX_URL_LEN:
        return f"`upload_url` must be a string of 1 to {MAX_URL_LEN} characters"
    if not url.lower().startswith(("http://", "https://")):
        return "`upload_url` must be an http:// or https:// URL"
    return ""


ARG_CHECKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "siren": _check_switch("pattern", None),
    "light": _check_switch("mode", ("steady", "strobe")),
    "snapshot": _check_snapshot,
    "arm": _check_arm,
    "ack": _check_only_string("alarm_id"),
    "ping": _check_none,
    "live": _check_live,
    "live-stop": _check_live_stop,
    "fetch": _check_fetch,
}


def check_args(action: str, args: dict[str, Any]) -> str:
    """Empty if `args` suit `action`, else what is wrong."""
    return ARG_CHECKS[action](args)


class CommandVerifier:
    """Accepts only well-formed, fresh, unreplayed commands signed by a configured key."""

    def __init__(self, node: str, public_keys: list[str], *, window_s: float = 120.0,
                 max_bytes: int = 4096, replay: ReplayGuard | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.keys: dict[str, Ed25519PublicKey] = {}
        for text in public_keys:
            key = load_public_key(text)
            self.keys[key_id(key)] = key
        self.window_s = window_s
        self.max_bytes = max_bytes
        self.replay = replay or ReplayGuard(keep_s=2 * window_s + 10)
        self.clock = clock

    def verify(self, topic_action: str, payload: bytes) -> Verdict:
        """Check one command received on `<root>/cmd/<topic_action>`."""
        if len(payload) > self.max_bytes:
            return Verdict(False, f"payload of {len(payload)} bytes exceeds {self.max_bytes}")
        try:
            doc = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return Verdict(False, "payload is not JSON")
        if not isinstance(doc, dict):
            return Verdict(False, "payload is not a JSON object")
        raw_id = doc.get("id")
        cmd_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= MAX_ID_LEN else None
        action = doc.get("action") if isinstance(doc.get("action"), str) else None

        def refuse(reason: str) -> Verdict:
            return Verdict(False, reason, cmd_id, action)

        if cmd_id is None:
            return refuse(f"`id` must be a string of 1 to {MAX_ID_LEN} characters")
        unknown = set(doc) - FIELDS
        if unknown:
            return refuse(f"unknown field(s) {sorted(unknown)[:5]}")
        ts, args, sig = doc.get("ts"), doc.get("args", {}), doc.get("sig")
        if not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts < 2**53:
            return refuse("`ts` must be an integer (Unix seconds)")
        if action is None:
            return refuse("`action` must be a string")
        if not isinstance(args, dict):
            return refuse("`args` must be a JSON object")
        if sig is None:
            return refuse("unsigned command")
        if not isinstance(sig, str):
            return refuse("`sig` must be base64 text")
        try:
            signature = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            return refuse("`sig` is not base64")
        key_name = self._check_signature(doc.get("key_id"), signature, cmd_id, ts, action, args)
        if key_name is None:
            return refuse("bad signature (or key not allowed on this node)")
        if action != topic_action:
            return refuse(f"action {action!r} sent on the topic of {topic_action!r}")
        now = self.clock()
        if abs(now - ts) > self.window_s:
            return refuse(f"`ts` is {ts - now:+.0f} s from the node's clock "
                          f"(allowed ±{self.window_s:.0f} s)")
        if not self.replay.check_and_remember(cmd_id, ts, now):
            return refuse("replayed command id")
        if action not in ACTIONS:
            return refuse(f"unknown action {action!r} (known: {', '.join(ACTIONS)})")
        problem = check_args(action, args)
        if problem:
            return refuse(f"bad arguments for {action}: {problem}")
        return Verdict(True, "", cmd_id, action, args, key_name)

    def _check_signature(self, wanted: Any, signature: bytes, cmd_id: str, ts: int,
                         action: str, args: dict[str, Any]) -> str | None:
        if len(signature) != 64:
            return None
        try:
            message = signed_bytes(self.node, cmd_id, ts, action, args)
        except (ValueError, TypeError, RecursionError):
            return None
        candidates = ([(wanted, self.keys[wanted])] if isinstance(wanted, str)
                      and wanted in self.keys else list(self.keys.items()))
        for name, key in candidates:
            try:
                key.verify(signature, message)
                return name
            except InvalidSignature:
                continue
        return None


def loggable_args(args: dict[str, Any]) -> dict[str, Any]:
    """`args` fit for a log line: a URL's query (a presigned upload URL's signature) and any
    user:password in it are cut, since journald keeps what it is given.

    >>> loggable_args({"camera": "gate", "upload_url": "https://s3.example/b/k?X-Amz-Signature=ab"})
    {'camera': 'gate', 'upload_url': 'https://s3.example/b/k?…'}
    >>> loggable_args({"upload_url": "https://u:p@host/x"})
    {'upload_url': 'https://***@host/x'}
    """
    shown = dict(args)
    for key, value in args.items():
        if key.endswith("_url") and isinstance(value, str):
            base, query, _ = value.partition("?")
            scheme, sep, rest = base.partition("://")
            if sep and "@" in rest.split("/", 1)[0]:
                base = f"{scheme}://***@{rest.split('@', 1)[1]}"
            shown[key] = base + ("?…" if query else "")
    return shown
