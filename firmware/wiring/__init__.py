"""The only place where packages meet: each module builds one area's components.

A module here has `build(ctx: Context) -> list[Component]`. It creates the package's
objects from config, subscribes them to the bus and adapts their callbacks into bus
messages (`firmware.events`). `build_all` calls them in data-flow order. What one area
offers the next goes through `ctx.shared`, a typed `Shared` (`firmware.wiring.shared`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.bus import EventBus
from firmware.component import Component
from firmware.config import Config
from firmware.wiring.shared import MissingProvider, Shared

__all__ = ["AREAS", "Context", "MissingProvider", "Shared", "build_all"]

log = logging.getLogger(__name__)

# Data-flow order: producers first, then the alarm, then reporting. An area that the
# config switches off is not even imported: a node without the `detect` extra (no
# OpenCV, no tflite) runs everything else.
AREAS: dict[str, Callable[[Config], bool]] = {
    "system": lambda config: True,
    "cameras": lambda config: True,
    "recorder": lambda config: config.recorder.enabled,
    "detect": lambda config: config.detect.enabled,
    "alarm": lambda config: True,
    "mqtt": lambda config: config.mqtt.enabled,
    "uplink": lambda config: config.uplink.enabled,  # after mqtt: it publishes live/<cam>
    "web": lambda config: config.web.enabled,
}


@dataclass
class Context:
    """What every area's builder gets."""

    config: Config
    bus: EventBus
    health: Callable[[], dict[str, Any]]  # the node's current health report
    state_dir: Path
    shared: Shared = field(default_factory=Shared)  # what one area offers the next
    faults: dict[str, str] = field(default_factory=dict)  # areas that failed to build: why

    def __post_init__(self) -> None:
        self.shared = Shared.of(self.shared)  # a dict of services is accepted too


def build_all(ctx: Context) -> list[Component]:
    """Build every configured area. One area failing to build (a corrupt database, a
    missing library) is logged and recorded in `ctx.faults`; the others still run, so
    that a broken MQTT outbox can never take the panic button down with it.

    An area that needs a shared service nobody offered (`Shared.need`, `Shared.later`)
    fails to start the same way, with the missing service named."""
    built: dict[str, list[Component]] = {}
    for area, configured in AREAS.items():
        if not configured(ctx.config):
            continue
        try:
            module = importlib.import_module(f"firmware.wiring.{area}")
            built[area] = module.build(ctx)
        except MissingProvider as exc:
            log.error("area %s failed to start: %s", area, exc)
            ctx.faults[area] = f"failed to start: {exc}"
        except Exception as exc:
            log.exception("area %s failed to start; the node runs without it", area)
            ctx.faults[area] = f"failed to start: {exc!r}"
    for consumer, name in ctx.shared.unmet():
        error = MissingProvider(name, consumer)
        log.error("area %s failed to start: %s", consumer, error)
        ctx.faults[consumer] = f"failed to start: {error}"
        built.pop(consumer, None)
    return [component for components in built.values() for component in components]
