"""The status LED: one glance tells a volunteer whether the post is working.

Modes, by priority, and their rhythms (on/off seconds):

=============  ==========================  =========================================
mode           rhythm                      meaning
=============  ==========================  =========================================
holding        steady on                   a panic button is being held (hold policy)
alarm          fast flash 0.1/0.1          an alarm is active
fault          three flashes, pause        a part of the node has crashed
no_network     two flashes, pause          no connection to the Command Center
booting        slow even blink 0.5/0.5     the node is starting
ok             short blip every 3 s        all well (a blip, not steady: a frozen
                                           daemon cannot keep blinking)
=============  ==========================  =========================================
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from drivers.gpio.pattern import PatternOutput

if TYPE_CHECKING:  # the alarm domain does not import the wiring
    from firmware.wiring.shared import Shared

log = logging.getLogger(__name__)

RHYTHMS: dict[str, list[float]] = {
    "holding": [],
    "alarm": [0.1, 0.1],
    "fault": [0.15, 0.2, 0.15, 0.2, 0.15, 1.5],
    "no_network": [0.15, 0.2, 0.15, 1.5],
    "booting": [0.5, 0.5],
    "ok": [0.05, 2.95],
}


def choose_mode(*, holding: bool, alarm: bool, fault: bool, connected: bool | None,
                booting: bool) -> str:
    """The status LED mode for these facts (`connected` None = unknown: not a fault)."""
    if holding:
        return "holding"
    if alarm:
        return "alarm"
    if fault:
        return "fault"
    if booting:
        return "booting"
    if connected is False:
        return "no_network"
    return "ok"


def faulty_components(health: dict[str, Any], ignore: str = "alarm") -> list[str]:
    """Names of components that crashed or stopped, from the node's health report."""
    bad = []
    for name, part in (health.get("components") or {}).items():
        if name == ignore or not isinstance(part, dict):
            continue
        if part.get("error") or part.get("running") is False:
            bad.append(name)
    return bad


def mqtt_connected(shared: Shared) -> bool | None:
    """Whether the node reaches its broker; None when nobody can say.

    Asks ``shared.mqtt_connected()`` if it is offered, else the MQTT bridge's
    ``shared.mqtt.link.connected``; anything missing or failing means unknown.
    """
    probe = shared.mqtt_connected
    try:
        if callable(probe):
            return bool(probe())
        link = getattr(shared.mqtt, "link", None)
        connected = getattr(link, "connected", None)
        return connected if isinstance(connected, bool) else None
    except Exception:
        log.debug("mqtt connection state unavailable", exc_info=True)
        return None


class StatusIndicator:
    """Plays the rhythm of the current mode on the status LED (if there is one)."""

    def __init__(self, led: PatternOutput | None) -> None:
        self.led = led
        self.mode = ""

    def show(self, mode: str, force: bool = False) -> None:
        """Switch to `mode` (no-op when unchanged, unless `force`)."""
        if (mode == self.mode and not force) or self.led is None:
            self.mode = mode
            return
        self.mode = mode
        self.led.play(mode, RHYTHMS[mode], cause=f"status:{mode}")
