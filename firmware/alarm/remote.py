"""Remote commands for the alarm area: `siren`, `light`, `ack`, `arm`.

The MQTT area has already verified the command (signature, time window, replay); here
the arguments are checked and acted on, and `reply(ok, message, data)` is called exactly
once, whatever happens. Unknown arguments are ignored and named in the reply's
``data["ignored"]`` (a newer Command Center may send more than this node knows).

==========  ==========================================================================
action      args
==========  ==========================================================================
siren       ``state``: on | off; ``for_s``: seconds (capped at siren_max_s);
            ``pattern``: a rhythm name from [alarm] patterns (default: kind "remote")
light       ``state``: on | off; ``for_s`` (capped at light_max_s);
            ``mode``: steady | strobe
ack         ``alarm_id`` (optional): silence and clear the active alarm; with an id,
            only if that alarm is the active one (a late ack never clears a newer alarm)
arm         ``mode``: armed | disarmed | schedule; ``schedule``: ["22:00-05:00", ...]
==========  ==========================================================================

Example (the `args` of an MQTT command)::

    {"action": "siren", "args": {"state": "on", "for_s": 30, "pattern": "titir"}}
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from firmware.alarm.arming import ArmState
from firmware.alarm.controller import AlarmController
from firmware.events import ArmStateChanged, Command, Message

log = logging.getLogger(__name__)

ACTIONS = ("siren", "light", "ack", "arm")
KNOWN_ARGS = {
    "siren": {"state", "for_s", "pattern"},
    "light": {"state", "for_s", "mode"},
    "ack": {"alarm_id"},
    "arm": {"mode", "schedule"},
}


class CommandRefused(ValueError):
    """The command's arguments cannot be carried out; the message says why."""


def _once(reply: Callable[[bool, str, dict], None]) -> Callable[[bool, str, dict], None]:
    lock = threading.Lock()
    done = False

    def reply_once(ok: bool, message: str, data: dict) -> None:
        nonlocal done
        with lock:
            if done:
                return
            done = True
        reply(ok, message, data)

    return reply_once


def _duration(args: dict[str, Any], limit: float) -> float:
    value = args.get("for_s", limit)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CommandRefused(f"for_s must be a number of seconds (got {value!r})")
    if value <= 0:
        raise CommandRefused(f"for_s must be positive (got {value!r})")
    return min(float(value), limit)


def _state(args: dict[str, Any]) -> str:
    state = args.get("state")
    if state not in ("on", "off"):
        raise CommandRefused(f"state must be 'on' or 'off' (got {state!r})")
    return state


class RemoteControl:
    """Handles `Command`s for the alarm's actions; others are left to their owners."""

    def __init__(self, controller: AlarmController, arm: ArmState,
                 publish: Callable[[Message], None],
                 on_arm_change: Callable[[], None] = lambda: None) -> None:
        self.controller = controller
        self.arm = arm
        self.publish = publish
        self.on_arm_change = on_arm_change
        self.handled = 0
        self.refused = 0

    def handle(self, cmd: Command) -> None:
        """Bus handler: act on `cmd` if it is ours and reply exactly once."""
        if cmd.action not in ACTIONS:
            return
        reply = _once(cmd.reply)
        args = cmd.args if isinstance(cmd.args, dict) else {}
        ignored = sorted(str(k) for k in args if k not in KNOWN_ARGS[cmd.action])
        cause = f"cmd:{cmd.key_id}"
        try:
            message, data = getattr(self, f"_{cmd.action}")(args, cause)
        except CommandRefused as exc:
            self.refused += 1
            log.warning("command %s %s refused: %s", cmd.id, cmd.action, exc)
            reply(False, str(exc), {"ignored": ignored} if ignored else {})
            return
        except Exception as exc:
            self.refused += 1
            log.exception("command %s %s failed", cmd.id, cmd.action)
            reply(False, f"failed: {exc}", {})
            return
        self.handled += 1
        if ignored:
            data["ignored"] = ignored
            message += f" (ignored unknown args: {', '.join(ignored)})"
        log.info("command %s %s by %s: %s", cmd.id, cmd.action, cmd.key_id, message)
        reply(True, message, data)

    # -- actions -----------------------------------------------------------------------
    def _siren(self, args: dict[str, Any], cause: str) -> tuple[str, dict]:
        settings = self.controller.settings
        siren = self.controller.panel.siren if self.controller.panel else None
        if siren is None:
            raise CommandRefused("this node has no siren")
        if _state(args) == "off":
            was = siren.off(cause=cause)
            return ("siren off" if was else "siren was already off"), {"siren": "off"}
        default = settings.kind_patterns.get("remote", "panic")
        name = args.get("pattern", default)
        if not isinstance(name, str) or name not in settings.patterns:
            raise CommandRefused(f"unknown pattern {name!r}; known: "
                                 + ", ".join(sorted(settings.patterns)))
        seconds = _duration(args, settings.siren_max_s)
        until = siren.play(name, settings.patterns[name], cause=cause, duration_s=seconds)
        left = seconds if until is None else max(0.0, until - time.time())
        return f"siren {name} for {left:.0f} s", {"siren": name, "until": until}

    def _light(self, args: dict[str, Any], cause: str) -> tuple[str, dict]:
        settings = self.controller.settings
        light = self.controller.panel.light if self.controller.panel else None
        if light is None:
            raise CommandRefused("this node has no light")
        if _state(args) == "off":
            was = light.off(cause=cause)
            return ("light off" if was else "light was already off"), {"light": "off"}
        mode = args.get("mode", "steady")
        if mode not in ("steady", "strobe"):
            raise CommandRefused(f"mode must be 'steady' or 'strobe' (got {mode!r})")
        seconds = _duration(args, settings.light_max_s)
        if mode == "strobe":
            until = light.play("strobe", settings.strobe, cause=cause, duration_s=seconds)
        else:
            until = light.on(cause=cause, duration_s=seconds)
        left = seconds if until is None else max(0.0, until - time.time())
        return f"light {mode} for {left:.0f} s", {"light": "strobe" if mode == "strobe"
                                                  else "on", "until": until}

    def _ack(self, args: dict[str, Any], cause: str) -> tuple[str, dict]:
        wanted = args.get("alarm_id")
        if wanted is not None and not isinstance(wanted, str):
            raise CommandRefused(f"alarm_id must be a string (got {wanted!r})")
        alarm = self.controller.ack(cause, only=wanted)  # checked under the lock
        if wanted is not None and alarm is None:
            active = self.controller.alarm
            raise CommandRefused(f"alarm {wanted!r} is not the active alarm (active: "
                                 f"{active.alarm_id if active else 'none'})")
        if alarm is None:
            return "no active alarm; outputs off", {"alarm_id": None}
        return f"alarm {alarm.alarm_id} cleared", {"alarm_id": alarm.alarm_id}

    def _arm(self, args: dict[str, Any], cause: str) -> tuple[str, dict]:
        mode = args.get("mode")
        schedule = args.get("schedule")
        try:
            self.arm.set(mode, schedule)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise CommandRefused(str(exc)) from None
        self.on_arm_change()
        self.publish(ArmStateChanged(mode=self.arm.mode, cause=cause))
        state = self.arm.describe()
        return f"{state['mode']} (armed now: {state['armed']})", state
