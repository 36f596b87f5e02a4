"""`FleetSim` (`central/devtools/fleet_sim.py`) with what the Command Center needs to be
tested at scale: posts on a map (a name and a position around a city centre in their
health) and a burst (every node raises an event in the same second) before the steady rate.

Example::

    result = CityFleet(ClientOptions(broker=url), nodes=1000, duration_s=20, burst=True).run()
"""

from __future__ import annotations

import math
import time
from typing import Any

from central.devtools.fleet_sim import FleetSim
from mqtt.link import encode
from mqtt.payloads import health_payload

MAGELANG = (-7.4797, 110.2177)


class CityFleet(FleetSim):
    """Simulated posts spread over a ~6 km disc, optionally opening with a burst."""

    def __init__(self, *args: Any, burst: bool = False, centre: tuple[float, float] = MAGELANG,
                 **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.burst = burst
        self.centre = centre
        self.burst_s: float | None = None

    def position(self, index: int) -> list[float]:
        # a sunflower spiral: evenly spread, deterministic, no two posts on top of each other
        r = 0.055 * math.sqrt((index + 0.5) / max(1, self.count))
        a = index * math.pi * (3 - math.sqrt(5))
        return [round(self.centre[0] + r * math.sin(a), 6),
                round(self.centre[1] + r * math.cos(a) / math.cos(math.radians(self.centre[0])), 6)]

    def _health(self, sim: Any) -> None:
        index = int(sim.node_id.rsplit("-", 1)[1])
        report = {"node": sim.node_id, "name": f"Pos simulasi {index + 1}", "version": "sim",
                  "location": self.position(index), "ts": time.time(),
                  "uptime_s": time.time() - sim.started, "last_error": None,
                  "components": {"system": {"cpu_percent": self.random.uniform(5, 60),
                                            "temperature_c": self.random.uniform(40, 70),
                                            "throttled": [], "clock_synced": True}}}
        doc = health_payload(report, mqtt={"connected": True},
                             outbox={"depth": 0, "bytes": 0, "drops": 0})
        sim.client.publish(sim.topics.health, encode(doc), qos=1, retain=True)

    def _run_events(self) -> None:
        if self.burst:
            start = time.monotonic()
            for sim in self.nodes:  # every node raises an event in the same second
                self._event(sim)
                if sim.client.want_write():
                    sim.client.loop_write()
            self.burst_s = time.monotonic() - start
        super()._run_events()
