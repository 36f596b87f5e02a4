"""Wiring of the web area: the page (`web/`) served by uvicorn inside the daemon.

Gives the page a `web.node.Node` of callbacks: the node's health, camera names, each
camera's (sub)stream for the live view (``ctx.shared["cameras"]``), snapshots
(``ctx.shared["snapshot"]``), the recordings directory, and a `command()` that puts
``ack`` / ``siren`` on the bus as a `Command` from ``web:<user>`` for the alarm area to
carry out (so the siren limits and reports are the alarm area's, not the page's). Every
`Event` on the bus also goes into the page's own event log.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from drivers.cameras.base import StreamInput
from firmware.component import Component
from firmware.events import Command, Event, new_id
from firmware.wiring import Context
from web.app import Web
from web.eventlog import FILENAME as EVENTS_FILE
from web.eventlog import EventLog
from web.node import Node
from web.server import self_signed, serve
from web.users import FILENAME as USERS_FILE
from web.users import UserStore

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 5.0


class WebServer(Component):
    """Serves the page until stopped; a crash (port taken) is restarted with backoff."""

    name = "web"

    def __init__(self, web: Web, host: str, port: int, tls: tuple[Any, Any] | None) -> None:
        super().__init__()
        self.web = web
        self.host, self.port, self.tls = host, port, tls
        self.listening = False

    def run(self) -> None:
        certfile, keyfile = self.tls or (None, None)
        try:
            serve(self.web.app, self.host, self.port, self.stopping, certfile=certfile,
                  keyfile=keyfile, beat=self.beat,
                  on_ready=lambda: setattr(self, "listening", True))
        finally:
            self.listening = False

    def close(self) -> None:
        self.web.live.close()

    def health(self) -> dict[str, Any]:
        return {"listening": self.listening, "port": self.port, "https": self.tls is not None,
                "sessions": len(self.web.sessions), "live_viewers": self.web.live.viewers()}

    def summary(self) -> str:
        return f"web :{self.port}" if self.listening else "web not listening"


def _command(ctx: Context, action: str, args: dict[str, Any], user: str) -> tuple[bool, str]:
    """Put a command on the bus for its owner area and wait for the reply."""
    done = threading.Event()
    answer: list[tuple[bool, str]] = []

    def reply(ok: bool, message: str, data: dict | None = None) -> None:
        answer.append((bool(ok), str(message)))
        done.set()

    ctx.bus.publish(Command(id=new_id(), action=action, args=args, key_id=f"web:{user}",
                            reply=reply))
    if not done.wait(COMMAND_TIMEOUT_S):
        return False, "not available on this node"
    return answer[0]


def build(ctx: Context) -> list[Component]:
    config = ctx.config
    settings = config.web
    enabled = [c.name for c in config.cameras if c.enabled]

    def live_input(camera: str) -> StreamInput | None:
        registry = ctx.shared.get("cameras")
        if registry is None or camera not in registry:
            return None
        return registry.get(camera).detect  # the substream when the camera has one

    def snapshot(camera: str) -> bytes | None:
        grab = ctx.shared.get("snapshot")
        return grab(camera, timeout=3.0) if grab is not None else None

    node = Node(name=config.node.name or config.node.id, health=ctx.health,
                cameras=lambda: list(enabled), live_input=live_input, snapshot=snapshot,
                command=lambda action, args, user: _command(ctx, action, args, user),
                recordings=config.recorder.path if config.recorder.enabled else None,
                patterns=tuple(config.alarm.patterns))
    events = EventLog(ctx.state_dir / EVENTS_FILE, max_events=settings.event_log_max)

    def record(event: Event) -> None:
        try:
            events.add(event.id, event.ts, event.type, event.camera, event.payload(),
                       event.snapshot)
        except Exception as exc:  # a full SD card must not stop the bus
            log.warning("web: event %s not logged: %s", event.id, exc)

    ctx.bus.subscribe(Event, record, name="web:events")
    tls = None
    if settings.tls == "self-signed":
        tls = self_signed(ctx.state_dir, config.node.id)
    elif settings.tls == "files":
        tls = (settings.tls_cert, settings.tls_key)
    web = Web(node, settings, UserStore(ctx.state_dir / USERS_FILE), events,
              secure_cookies=tls is not None, workdir=None)
    ctx.shared["web"] = web
    return [WebServer(web, settings.host, settings.port, tls)]
