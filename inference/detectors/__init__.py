"""Detector back-ends as plugins, chosen by ``[detect] type``.

A back-end is a module of this package named after its type (``tflite.py`` is
``type = "tflite"``) that registers a factory::

    @register("tflite")
    def create(settings: DetectSettings) -> DetectorPlugin:
        return Detector(settings.model, ...)

The pipeline only sees a `DetectorPlugin` (`detect(rgb)`, `input_size`, `min_score`,
`model_type`), so adding a back-end (YOLO-style outputs, ONNX Runtime, an accelerator) is
one new module here and touches neither the pipeline nor the service. `types()` lists
the back-ends without importing them (a node without tflite can still validate its
config), and `create` imports only the one configured.

>>> "tflite" in types()
True
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from inference.detector import Detection
    from inference.settings import DetectSettings


class DetectorPlugin(Protocol):
    """What the pipeline needs of a detector."""

    input_size: int  # the model's square input side: crops are cut at least this big
    min_score: float  # the floor of what `detect` returns (the pipeline may lower it)
    model_type: str  # shown in health, e.g. "ssd" or "mediapipe"

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Objects in `rgb` (HxWx3 uint8, any size), boxes in 0..1 of the image."""
        ...


Factory = Callable[["DetectSettings"], DetectorPlugin]
_FACTORIES: dict[str, Factory] = {}


def register(type_name: str) -> Callable[[Factory], Factory]:
    """Decorator: `factory(settings)` makes the detector of `type = type_name`."""
    def add(factory: Factory) -> Factory:
        _FACTORIES[type_name] = factory
        return factory
    return add


def types() -> list[str]:
    """Every back-end: the modules of this package and any registered elsewhere."""
    modules = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return sorted(modules | _FACTORIES.keys())


def create(settings: DetectSettings) -> DetectorPlugin:
    """The detector `settings.type` names, made from `settings`."""
    if settings.type not in _FACTORIES:
        if settings.type not in types():
            raise ValueError(f"unknown detector type {settings.type!r} "
                             f"(known: {', '.join(types())})")
        importlib.import_module(f"{__name__}.{settings.type}")
    return _FACTORIES[settings.type](settings)
