"""The node daemon: builds the configured components and runs them until told to stop."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from firmware import __version__
from firmware.bus import EventBus
from firmware.component import Component
from firmware.config import Config
from firmware.fallback import Rejection, save_last_good
from firmware.notify import notify
from firmware.supervisor import Supervisor
from firmware.wiring import Context, build_all

log = logging.getLogger(__name__)


class Daemon:
    """One node. `run()` blocks until `request_stop()` (the CLI wires it to SIGTERM).

    `rejected`: the config file could not be used and `config` is the safe-mode config of
    `firmware.fallback` (the alarm, MQTT if usable); health and the status LED say why.
    """

    def __init__(self, config: Config, extra: Iterable[Component] = (),
                 rejected: Rejection | None = None) -> None:
        self.config = config
        self.rejected = rejected
        self.started = time.time()
        self.bus = EventBus()
        self.state_dir = config.node.data_dir
        unusable = ""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # data_dir on a missing SSD: the panic button must still run
            from firmware import fallback

            unusable = (f"data_dir {self.state_dir} unusable ({exc.strerror or exc}); state "
                        f"kept in {fallback.DEFAULT_DATA_DIR}")
            log.error("%s", unusable)
            self.state_dir = fallback.DEFAULT_DATA_DIR
            self.state_dir.mkdir(parents=True, exist_ok=True)
            config = self.config = config.model_copy(update={
                "node": config.node.model_copy(update={"data_dir": self.state_dir})})
        self.context = Context(config, self.bus, self.health, self.state_dir)
        if unusable:
            self.context.faults["node"] = unusable
        if rejected is not None:
            self.context.shared["config_rejected"] = rejected.reason
            self.context.shared["gpio_candidates"] = rejected.gpio_candidates
        self.components = build_all(self.context) + list(extra)
        if rejected is not None and rejected.gpio_candidates:
            rejected.sources["gpio"] = self.context.shared.get("gpio_source",
                                                               rejected.sources["gpio"])
        if rejected is None and not self.context.shared.get("gpio_error"):
            save_last_good(config)  # only pins that could be claimed
        self.supervisor = Supervisor(self.components)

    def health(self) -> dict[str, Any]:
        """The node's health: identity, uptime and each component's figures."""
        return {
            "node": self.config.node.id,
            "name": self.config.node.name,
            "location": self.config.node.position,
            "version": __version__,
            "ts": time.time(),
            "uptime_s": round(time.time() - self.started, 1),
            "components": self.supervisor.health(),
            "faults": dict(self.context.faults),
            "config_rejected": self.rejected.as_dict() if self.rejected else None,
            "last_error": (self.rejected.reason if self.rejected else None)
            or self.supervisor.last_error or next(iter(self.context.faults.values()), None),
        }

    def request_stop(self) -> None:
        self.supervisor.request_stop()

    def run(self) -> int:
        log.info("ronda %s starting as node %s", __version__, self.config.node.id)
        if self.rejected is not None:
            log.error("%s in %s: SAFE MODE, only the alarm runs (gpio from %s, alarm from "
                      "%s, mqtt: %s)", self.rejected.reason, self.rejected.source,
                      self.rejected.sources["gpio"], self.rejected.sources["alarm"],
                      self.rejected.sources["mqtt"])
        self.bus.start()
        try:
            self.supervisor.start()
            notify(f"READY=1\nSTATUS={self.supervisor.status_line()}")
            log.info("node %s ready (%d components)", self.config.node.id, len(self.components))
            self.supervisor.loop()
        finally:
            notify("STOPPING=1\nSTATUS=stopping")
            log.info("stopping")
            self.supervisor.stop()
            self.bus.stop()
            log.info("stopped")
        return 0
