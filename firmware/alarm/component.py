"""The alarm's supervised loop: restart report, alarm timeouts, siren guard, status LED.

The loop is a second line of defence only: the siren's own output thread already stops
it at siren_max_s. What the loop adds is reporting (the interrupted alarm after a
restart, the outputs' real state at start) and the status LED.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from drivers.gpio.panel import Panel
from firmware.alarm.arming import ArmState
from firmware.alarm.controller import AlarmController
from firmware.alarm.status import (
    StatusIndicator,
    choose_mode,
    faulty_components,
    mqtt_connected,
    offline_cameras,
    storage_problem,
)
from firmware.component import Component
from firmware.events import ArmStateChanged, Message, OutputChanged

if TYPE_CHECKING:  # the alarm domain does not import the wiring
    from firmware.wiring.shared import Shared

log = logging.getLogger(__name__)


class AlarmComponent(Component):
    """Runs the alarm area. `stop()` is final: outputs off and pins released."""

    name = "alarm"
    stall_after_s = 10.0

    def __init__(self, controller: AlarmController, panel: Panel | None,
                 status: StatusIndicator, arm: ArmState, publish: Callable[[Message], None],
                 *, shared: Shared, node_health: Callable[[], dict[str, Any]],
                 tick_s: float = 0.2, health_every_s: float = 5.0,
                 boot_grace_s: float = 60.0, gpio_error: str = "") -> None:
        super().__init__()
        self.controller = controller
        self.panel = panel
        self.status = status
        self.arm = arm
        self.publish = publish
        self.shared = shared
        self.node_health = node_health
        self.tick_s = tick_s
        self.health_every_s = health_every_s
        self.boot_grace_s = boot_grace_s
        self.gpio_error = gpio_error
        self.faults: list[str] = []
        self.offline: list[str] = []  # cameras without a picture
        self.storage = ""  # why the recordings disk fails
        self.config_rejected = str(shared.get("config_rejected") or "")
        self._announced = False
        self._ready = False
        self._started = time.monotonic()
        self._next_health = 0.0
        self.health_timeout_s = 30.0
        self._health_thread: threading.Thread | None = None
        self._health_started = 0.0

    def run(self) -> None:
        if not self._announced:
            self._announce()
        while True:
            self.controller.tick()
            self._update_status()
            self.beat()
            if self.stopping.wait(self.tick_s):
                return

    def _announce(self) -> None:
        """Once per daemon start: the real state of every output and the arm mode, and the
        alarm a crash interrupted (if any)."""
        self._announced = True
        if self.panel is not None:
            for name, out in self.panel.outputs().items():
                if name != "status_led" and not out.active:
                    self.publish(OutputChanged(name=name, state="off", cause="start"))
        self.publish(ArmStateChanged(mode=self.arm.mode, cause="start"))
        self.controller.report_interrupted()

    def _update_status(self) -> None:
        now = time.monotonic()
        connected = mqtt_connected(self.shared)
        if now >= self._next_health:
            self._next_health = now + self.health_every_s
            self._check_faults(now)
        if not self._ready:
            self._ready = connected is not False or now - self._started > self.boot_grace_s
        mode = choose_mode(holding=bool(self.controller.holding),
                           alarm=self.controller.alarm is not None,
                           fault=bool(self.faults or self.gpio_error),
                           connected=connected, booting=not self._ready,
                           config_rejected=bool(self.config_rejected),
                           storage=bool(self.storage), camera_offline=bool(self.offline))
        self.status.show(mode)

    def _check_faults(self, now: float) -> None:
        """Start the fault check on its own thread; never wait for it here.

        The node's health() takes other areas' locks, SQLite and statvfs: on a hung disk it
        can take longer than the supervisor's stall limit, and this loop also guards the
        siren. A check that has not answered for `health_timeout_s` is itself a fault.
        """
        thread = self._health_thread
        if thread is not None and thread.is_alive():
            if now - self._health_started > self.health_timeout_s:
                self.faults = ["health: no answer for %.0f s" % (now - self._health_started)]
            return
        self._health_started = now
        self._health_thread = threading.Thread(target=self._read_faults, name="alarm-faults",
                                               daemon=True)
        self._health_thread.start()

    def _read_faults(self) -> None:
        try:
            health = self.node_health()
            self.faults = faulty_components(health)
            self.offline = offline_cameras(health)
            self.storage = storage_problem(health)
        except Exception as exc:
            log.debug("node health unavailable: %s", exc)

    def stop(self, timeout: float = 3.0) -> None:
        """Outputs off first, then everything else within `timeout` in all (the
        supervisor's stop budget is shared by every component)."""
        deadline = time.monotonic() + timeout
        left = lambda: max(0.0, deadline - time.monotonic())  # noqa: E731
        if self.panel is not None:
            self.panel.all_off("stop")
        super().stop(max(0.1, left() * 0.3))
        if self.panel is not None:
            self.panel.all_off("stop")  # again: the loop may have been mid-tick
            self.panel.close(timeout=left() * 0.5)
            self.panel = None
        self.controller.close(timeout=left())

    def health(self) -> dict[str, Any]:
        outputs = {}
        buttons = {}
        if self.panel is not None:
            outputs = {n: o.health() for n, o in self.panel.outputs().items()}
            for b in [*self.panel.buttons, *([self.panel.ack] if self.panel.ack else [])]:
                buttons[b.name] = {"pressed": b.is_pressed, "presses": b.presses,
                                   "bounces": b.bounces}
        return {**self.controller.health(), "outputs": outputs, "buttons": buttons,
                "status_led": self.status.mode, "arm": self.arm.describe(),
                "gpio_error": self.gpio_error or None, "faults": self.faults,
                "config_rejected": self.config_rejected or None}

    def summary(self) -> str:
        alarm = self.controller.alarm
        if alarm is not None:
            return f"ALARM {alarm.kind} ({alarm.presses} presses)"
        return "gpio unavailable" if self.gpio_error else ""
