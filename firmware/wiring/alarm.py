"""Wiring of the alarm area (not built yet: builds no component)."""

from __future__ import annotations

from firmware.component import Component
from firmware.wiring import Context


def build(ctx: Context) -> list[Component]:
    return []
