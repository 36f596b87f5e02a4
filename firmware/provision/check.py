"""One doctor check's outcome, and running a check so that it cannot crash the doctor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass
class Check:
    """The outcome of one check."""

    name: str
    status: str  # ok | warn | fail | skip
    detail: str = ""
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def guard(name: str, func: Callable[[], Check]) -> Check:
    """Run one check; an unexpected exception is a failure of that check, not of doctor."""
    try:
        return func()
    except Exception as exc:  # doctor reports, it does not crash
        return Check(name, FAIL, f"{type(exc).__name__}: {exc}", "report this as a bug")
