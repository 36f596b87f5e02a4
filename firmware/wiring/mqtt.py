"""Wiring of the mqtt area: the bus <-> the broker.

- every `Event` on the bus goes into the durable outbox (seq assigned there) and out
  on `<root>/events`, its JPEG on `<root>/events/<id>/snapshot`;
- `Snapshot` -> retained `<root>/cameras/<cam>/snapshot`;
- `OutputChanged` -> retained `<root>/outputs/<name>`;
- commands on `<root>/cmd/<action>` are verified (signature, time, replay, schema) and
  published as `Command`; the owner area calls `reply` once; `ping` is answered here;
  nobody answering within `command_timeout_s` gives an error reply (`mqtt/replies.py`:
  reply once, reply timeouts, the replay guard kept in the outbox).
"""

from __future__ import annotations

import atexit
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from firmware import __version__
from firmware.bus import EventBus
from firmware.component import Component
from firmware.config import Config, read_secret
from firmware.events import Command, Event, OutputChanged, Snapshot
from firmware.wiring import Context
from mqtt.commands import CommandVerifier, RefusalLog, Verdict, loggable_args, short_reason
from mqtt.discovery import discovery_messages
from mqtt.link import Link, encode
from mqtt.outbox import Outbox, OutboxWriter
from mqtt.payloads import event_payload, health_payload, output_payload, reply_payload
from mqtt.replies import persistent_replay_guard, reply_once
from mqtt.topics import Topics, safe_level

log = logging.getLogger(__name__)

OUTBOX_FILE = "mqtt-outbox.sqlite3"


class MqttBridge(Component):
    """Connects the node's bus to the city's broker (see the module docstring)."""

    name = "mqtt"
    stall_after_s = 60.0

    def __init__(self, config: Config, bus: EventBus, health: Callable[[], dict[str, Any]],
                 state_dir: Any) -> None:
        super().__init__()
        settings = config.mqtt
        self.config = config
        self.bus = bus
        self.node_health = health
        self.node = config.node.id
        self.topics = Topics(settings.prefix, self.node)
        # Never raises: a damaged file is moved aside, an unwritable state dir degrades
        # to memory (health says so); the rest of the node must run regardless.
        self.outbox = Outbox(state_dir / OUTBOX_FILE, max_events=settings.outbox_max_events,
                             max_bytes=settings.outbox_max_bytes)
        replay = persistent_replay_guard(self.outbox, settings.command_window_s)
        self.verifier = CommandVerifier(self.node, settings.command_keys,
                                        window_s=settings.command_window_s,
                                        max_bytes=settings.command_max_bytes, replay=replay)
        self.command_timeout_s = settings.command_timeout_s
        self.writer = OutboxWriter(self.outbox, on_stored=self._stored,
                                   on_error=self._store_failed,
                                   on_alarm=lambda: self.link.wake(urgent=True))
        atexit.register(self.writer.flush)  # events handed over during shutdown
        ha_prefix = settings.homeassistant_prefix
        listen = {f"{ha_prefix}/status": self.on_homeassistant_status} \
            if settings.homeassistant else {}
        self.link = Link(settings, self.topics, self.outbox, health=self.health_document,
                         on_command=self.on_command, password=read_secret(settings.password_file),
                         listen=listen)
        if self.outbox.degraded:
            self.link.last_error = self.outbox.degraded
        if settings.homeassistant:
            for topic, conf in discovery_messages(
                    self.topics, ha_prefix=settings.homeassistant_prefix,
                    name=config.node.name, version=__version__):
                self.link.set_retained(topic, encode(conf))
        self.commands_accepted = 0
        self.commands_refused = 0
        self.commands_empty = 0  # empty payloads (a retained command being cleared)
        self.refusal_log = RefusalLog(logger=log)
        self.events_stored = 0  # events this process put into the outbox
        self.event_errors = 0  # events that could not be stored
        bus.subscribe(Event, self.on_event, name="mqtt:events")
        bus.subscribe(Snapshot, self.on_snapshot, name="mqtt:snapshots")
        bus.subscribe(OutputChanged, self.on_output, name="mqtt:outputs")

    # -- component ----------------------------------------------------------------------
    def run(self) -> None:
        self.link.run(self.stopping, self.beat)

    def health(self) -> dict[str, Any]:
        out = self.outbox.stats()
        return {**self.link.stats(), "outbox_depth": out["depth"], "outbox_bytes": out["bytes"],
                "outbox_backlog": self.writer.backlog(), "outbox_batches": self.writer.batches,
                "drops": out["drops"], "last_seq": out["last_seq"],
                "event_errors": self.event_errors,
                "outbox_storage": out["storage"], "outbox_degraded": self.outbox.degraded,
                "outbox_recoveries": out["recoveries"],
                "commands_accepted": self.commands_accepted,
                "commands_refused": self.commands_refused,
                "commands_empty": self.commands_empty,
                "command_ids_not_persisted": self.verifier.replay.persist_errors}

    def summary(self) -> str:
        state = "mqtt up" if self.link.connected else "mqtt down"
        depth = self.outbox.depth()
        return f"{state}, {depth} queued" if depth else state

    def health_document(self) -> dict[str, Any]:
        """The `health` payload: the daemon's report plus this link's figures."""
        outbox = {**self.outbox.stats(), "backlog": self.writer.backlog(),
                  "write_errors": self.event_errors}
        return health_payload(self.node_health(), mqtt=self.link.stats(), outbox=outbox,
                              node=self.node)

    # -- bus -> broker --------------------------------------------------------------------
    def on_event(self, event: Event) -> None:
        """Store the event durably (seq assigned), then let the link publish it."""
        payload = event_payload(event.payload(), self.node, self.topics, bool(event.snapshot))
        self.writer.submit(event.id, int(event.priority), payload, event.snapshot or None)

    def _stored(self, count: int) -> None:
        self.events_stored += count
        self.link.wake()

    def _store_failed(self, exc: Exception, count: int) -> None:
        self.event_errors += count  # disk full, read-only, corrupt: say so in health
        self.link.last_error = f"outbox: {exc}"
        log.error("mqtt: %d event(s) not stored: %s", count, exc)

    def on_snapshot(self, snap: Snapshot) -> None:
        self.link.set_retained(self.topics.camera_snapshot(safe_level(snap.camera)), snap.jpeg)

    def on_output(self, change: OutputChanged) -> None:
        doc = output_payload(change.name, change.state, change.cause, change.ts, change.until)
        self.link.set_retained(self.topics.output(safe_level(change.name)), encode(doc))

    def on_homeassistant_status(self, payload: bytes) -> None:
        """Home Assistant (re)started: send the discovery configs again."""
        if payload == b"online":
            self.link.republish(self.config.mqtt.homeassistant_prefix + "/")

    # -- broker -> bus ------------------------------------------------------------------
    def on_command(self, action: str, payload: bytes) -> None:
        """Verify one command; refuse it with a reply (logged at a bounded rate), or hand
        it to its owner. An empty payload is how a retained command is cleared: ignored,
        no reply."""
        if not payload:
            self.commands_empty += 1
            return
        verdict = self.verifier.verify(action, payload)
        if not verdict.ok:
            self.commands_refused += 1
            self.refusal_log.refused(
                f"mqtt: refused command id={verdict.id!r} action={verdict.action!r}: "
                f"{verdict.reason}", short_reason(verdict.reason))
            self._send_reply(verdict.id, verdict.action, False, verdict.reason, {})
            return
        self.commands_accepted += 1
        log.info("mqtt: command %s %s %s (key %s)", verdict.id, verdict.action,
                 json.dumps(loggable_args(verdict.args), ensure_ascii=False), verdict.key_id)
        reply = self._reply_once(verdict)
        if verdict.action == "ping":
            reply(True, "pong", {"version": __version__, "node_ts": time.time(),
                                 "outbox_depth": self.outbox.depth()})
            return
        self.bus.publish(Command(id=verdict.id or "", action=verdict.action or "",
                                 args=dict(verdict.args), key_id=verdict.key_id, reply=reply))

    def _reply_once(self, verdict: Verdict) -> Callable[..., None]:
        return reply_once(verdict.id, lambda ok, message, data: self._send_reply(
            verdict.id, verdict.action, ok, message, data), self.command_timeout_s)

    def _send_reply(self, cmd_id: str | None, action: str | None, ok: bool, message: str,
                    data: dict[str, Any]) -> None:
        doc = reply_payload(self.node, cmd_id, action, ok, message, data)
        if not self.link.publish(self.topics.reply, encode(doc), qos=1):
            log.warning("mqtt: reply to %s not sent (not connected)", cmd_id)


def build(ctx: Context) -> list[Component]:
    if not ctx.config.mqtt.enabled:
        return []
    bridge = MqttBridge(ctx.config, ctx.bus, ctx.health, ctx.state_dir)
    ctx.shared["mqtt"] = bridge
    return [bridge]
