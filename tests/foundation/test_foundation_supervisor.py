"""The supervisor restarts a crashed component with the project's one backoff policy:
a ceiling of 1 s doubling to 60 s, full jitter under it, never less than 0.5 s."""

from __future__ import annotations

from firmware.component import Component
from firmware.supervisor import RESTART_FLOOR_S, RESTART_MAX_S, Supervisor


def crashed(name: str = "c") -> Component:
    component = Component()
    component.name = name
    component.error = RuntimeError("boom")  # and no thread: crashed, not running
    return component


def restart_delays(supervisor: Supervisor, name: str, count: int) -> list[float]:
    delays = []
    for i in range(count):
        now = 1000.0 * (i + 1)
        supervisor._restart_crashed(now)  # a crash seen: a restart is scheduled
        delays.append(supervisor._restart_at.pop(name) - now)
    return delays


def test_restart_delays_double_under_a_cap_with_jitter() -> None:
    supervisor = Supervisor([crashed()])
    delays = restart_delays(supervisor, "c", 9)
    ceilings = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert all(RESTART_FLOOR_S <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert max(delays) <= RESTART_MAX_S and supervisor.crashes["c"] == 9


def test_nodes_that_crash_together_do_not_restart_in_step() -> None:
    firsts = {round(restart_delays(Supervisor([crashed()]), "c", 3)[-1], 3) for _ in range(20)}
    assert len(firsts) > 10  # jittered: not all the same 4 s
