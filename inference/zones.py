"""Polygons on a camera's picture (coordinates in 0..1): zones that alert, masks that hide.

A track is in a zone when its feet (the middle of its box's bottom edge) are inside the
polygon, as a person standing at a gate is "in" the gate even if their head is not.

Example::

    gate = Zone("gate", [(0.1, 0.5), (0.6, 0.5), (0.6, 1.0), (0.1, 1.0)])
    gate.contains_box((0.2, 0.3, 0.3, 0.8))  # True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

Box = tuple[float, float, float, float]


def feet(box: Box) -> tuple[float, float]:
    """The middle of the box's bottom edge."""
    return (box[0] + box[2]) / 2, box[3]


@dataclass
class Polygon:
    """A polygon in picture fractions."""

    points: Sequence[Sequence[float]]

    def __post_init__(self) -> None:
        self._contour = np.asarray(self.points, np.float32).reshape(-1, 1, 2)

    def contains(self, x: float, y: float) -> bool:
        return cv2.pointPolygonTest(self._contour, (float(x), float(y)), False) >= 0

    def contains_box(self, box: Box) -> bool:
        return self.contains(*feet(box))


@dataclass
class Zone(Polygon):
    """A named polygon; `objects` limits the labels it alerts for (empty: all)."""

    name: str = ""
    objects: Sequence[str] = field(default_factory=tuple)

    def __init__(self, name: str, points: Sequence[Sequence[float]],
                 objects: Sequence[str] = ()) -> None:
        self.name = name
        self.objects = tuple(objects)
        self.points = points
        self.__post_init__()

    def accepts(self, label: str) -> bool:
        return not self.objects or label in self.objects
