"""Properties of the geometry that decides where the model looks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.detector import Detector
from inference.motion import merge_boxes
from inference.pipeline import CameraPipeline
from inference.settings import DetectSettings
from inference.tracker import iou

coord = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def boxes(draw) -> tuple[float, float, float, float]:
    x0, x1 = sorted((draw(coord), draw(coord)))
    y0, y1 = sorted((draw(coord), draw(coord)))
    return (x0, y0, max(x1, x0 + 1e-3), max(y1, y0 + 1e-3))


@given(st.lists(boxes(), max_size=8))
def test_merged_boxes_cover_the_inputs_and_stay_apart(items) -> None:
    merged = merge_boxes(items, gap=0.0)
    for b in items:
        assert any(m[0] <= b[0] and m[1] <= b[1] and b[2] <= m[2] and b[3] <= m[3]
                   for m in merged)
    for i, a in enumerate(merged):
        for b in merged[i + 1:]:
            assert iou(a, b) == 0.0


@pytest.fixture(scope="module")
def pipe(models_dir: Path) -> CameraPipeline:
    return CameraPipeline("p", DetectSettings(), Detector(models_dir / "pose_detection.tflite"),
                          640, 360)


@settings(max_examples=200, deadline=None)
@given(box=boxes())
def test_square_crops_are_model_sized_inside_the_frame_around_the_box(pipe, box) -> None:
    x0, y0, side = pipe._square(box)
    assert side >= pipe.detector.input_size
    if side <= 360:  # fits the frame: fully inside, no letterbox
        assert x0 >= 0 and x0 + side <= 640 and y0 >= 0 and y0 + side <= 360
    cx, cy = (box[0] + box[2]) / 2 * 640, (box[1] + box[3]) / 2 * 360
    assert x0 - 1 <= cx <= x0 + side + 1 and y0 - 1 <= cy <= y0 + side + 1
