"""The status LED: one glance tells a volunteer whether the post is working.

Modes, by priority, and their rhythms (on/off seconds). Counted flashes are easy to
tell apart in the dark: the more flashes, the further from the network the trouble is.

===============  ==========================  =======================================
mode             rhythm                      meaning
===============  ==========================  =======================================
holding          steady on                   a panic button is being held (hold policy)
alarm            fast flash 0.1/0.1          an alarm is active
config_rejected  long 1.5 s on, 0.5 s off    ronda.toml was refused: the alarm runs on
                                             safe settings (ronda-error.txt / doctor)
fault            three flashes, pause        a part of the node has crashed
booting          slow even blink 0.5/0.5     the node is starting (or first boot runs)
storage          five flashes, pause         the recordings disk is missing or failing
camera_offline   four flashes, pause         a camera gives no picture
no_network       two flashes, pause          no connection to the Command Center
ok               short blip every 3 s        all well (a blip, not steady: a frozen
                                             daemon cannot keep blinking)
===============  ==========================  =======================================
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from drivers.gpio.pattern import PatternOutput

if TYPE_CHECKING:  # the alarm domain does not import the wiring
    from firmware.wiring.shared import Shared

log = logging.getLogger(__name__)


def flashes(count: int, pause: float = 1.5) -> list[float]:
    """`count` short flashes, then a pause."""
    return [0.15, 0.2] * (count - 1) + [0.15, pause]


RHYTHMS: dict[str, list[float]] = {
    "holding": [],
    "alarm": [0.1, 0.1],
    "config_rejected": [1.5, 0.5],
    "fault": flashes(3),
    "booting": [0.5, 0.5],
    "storage": flashes(5),
    "camera_offline": flashes(4),
    "no_network": flashes(2),
    "ok": [0.05, 2.95],
}


def choose_mode(*, holding: bool, alarm: bool, fault: bool, connected: bool | None,
                booting: bool, config_rejected: bool = False, storage: bool = False,
                camera_offline: bool = False) -> str:
    """The status LED mode for these facts (`connected` None = unknown: not a fault)."""
    if holding:
        return "holding"
    if alarm:
        return "alarm"
    if config_rejected:
        return "config_rejected"
    if fault:
        return "fault"
    if booting:
        return "booting"
    if storage:
        return "storage"
    if camera_offline:
        return "camera_offline"
    if connected is False:
        return "no_network"
    return "ok"


def offline_cameras(health: dict[str, Any]) -> list[str]:
    """Enabled cameras the registry reports offline (no picture at all)."""
    part = (health.get("components") or {}).get("cameras")
    cams = part.get("cameras") if isinstance(part, dict) else None
    if not isinstance(cams, dict):
        return []
    return [name for name, cam in cams.items()
            if isinstance(cam, dict) and cam.get("state") == "offline"]


def storage_problem(health: dict[str, Any]) -> str:
    """Why the recordings disk does not work ('' when it does, or no recorder runs)."""
    part = (health.get("components") or {}).get("recorder")
    if isinstance(part, dict) and part.get("state") == "degraded":
        return str(part.get("reason") or "degraded")
    return ""


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
