"""``type = "tflite"``: a TensorFlow Lite model (`inference.detector.Detector`).

Uses ``model``, ``labels``, ``model_type`` (ssd, mediapipe or auto), ``num_threads``,
``delegate`` and ``delegate_device`` of ``[detect]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inference.detector import Detector
from inference.detectors import register

if TYPE_CHECKING:
    from inference.settings import DetectSettings


@register("tflite")
def create(settings: DetectSettings) -> Detector:
    """The TFLite detector; its floor is below the alert threshold so that tracks see
    their weaker frames too."""
    if settings.model is None:
        raise ValueError("no model configured ([detect] model)")
    return Detector(settings.model, labels=settings.labels, model_type=settings.model_type,
                    num_threads=settings.num_threads, delegate=settings.delegate,
                    device=settings.delegate_device, min_score=min(0.4, settings.min_score))
