"""Capped exponential backoff with full jitter: the one retry policy of the project.

Every retry loop (supervised components, child processes, the recorder, the MQTT link,
camera probes) waits with this policy, so a thousand nodes that lost their broker at the same
instant do not all knock on its door at the same instant when it returns ("full jitter" in the
AWS Architecture Blog's *Exponential Backoff And Jitter*).

>>> import random
>>> b = Backoff(initial_s=1.0, cap_s=8.0, rng=random.Random(1))
>>> [round(b.ceiling_s, 1) for _ in range(5) if b.next_delay() >= 0]
[2.0, 4.0, 8.0, 8.0, 8.0]
>>> all(0.0 <= Backoff(1.0, 8.0).next_delay() <= 1.0 for _ in range(100))
True
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive failures: uniform in ``[min_s, ceiling]``.

    The ceiling starts at ``initial_s`` and doubles after each delay handed out, up to
    ``cap_s``. :meth:`reset` after a success starts again from ``initial_s``. ``min_s`` keeps
    a floor under the jitter where a zero wait would be a busy loop (a child that exits at once).
    """

    def __init__(self, initial_s: float, cap_s: float, *, min_s: float = 0.0,
                 rng: random.Random | None = None) -> None:
        if not 0 <= min_s <= initial_s <= cap_s:
            raise ValueError("backoff needs 0 <= min_s <= initial_s <= cap_s")
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.min_s = min_s
        self._rng = rng or random.Random()
        self.attempts = 0

    @property
    def ceiling_s(self) -> float:
        """The upper bound of the next delay."""
        return min(self.cap_s, self.initial_s * (2 ** self.attempts))

    def next_delay(self) -> float:
        """The delay before the next try; each call doubles the ceiling (up to the cap)."""
        delay = self._rng.uniform(self.min_s, self.ceiling_s)
        self.attempts = min(self.attempts + 1, 64)
        return delay

    def reset(self) -> None:
        """A success: the next failure waits about ``initial_s`` again."""
        self.attempts = 0
