"""SSD anchors as MediaPipe's `SsdAnchorsCalculator` generates them.

MediaPipe's single-shot detectors (BlazeFace, BlazePose's person detector, BlazePalm) do
not carry their anchors in the model: the graph computes them from a few options. The
rule, per group of consecutive layers that share a stride: each layer contributes one
box per aspect ratio at its scale plus one "interpolated" box at the geometric mean of
its scale and the next layer's; every cell of the group's feature map (input size /
stride, rounded up) gets all of those boxes, cells in row-major order. With
`fixed_anchor_size` every anchor is 1x1 and the model regresses absolute sizes.

Example (the person detector: 2254 anchors)::

    anchors = ssd_anchors(POSE_DETECTION)
    anchors.shape  # (2254, 4): x_center, y_center, width, height in 0..1
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorOptions:
    """The `SsdAnchorsCalculatorOptions` fields that the MediaPipe detectors use."""

    input_width: int
    input_height: int
    min_scale: float
    max_scale: float
    strides: tuple[int, ...]
    aspect_ratios: tuple[float, ...] = (1.0,)
    anchor_offset_x: float = 0.5
    anchor_offset_y: float = 0.5
    interpolated_scale_aspect_ratio: float = 1.0
    reduce_boxes_in_lowest_layer: bool = False
    fixed_anchor_size: bool = True

    @property
    def num_layers(self) -> int:
        return len(self.strides)


# From MediaPipe's pose_detection graph (pose_detection.tflite, 224x224, 2254 anchors).
POSE_DETECTION = AnchorOptions(224, 224, 0.1484375, 0.75, (8, 16, 32, 32, 32))
# From MediaPipe's face_detection_short_range graph (128x128, 896 anchors).
FACE_SHORT_RANGE = AnchorOptions(128, 128, 0.1484375, 0.75, (8, 16, 16, 16))


def _scale(opts: AnchorOptions, index: int) -> float:
    if opts.num_layers == 1:
        return (opts.min_scale + opts.max_scale) / 2
    return opts.min_scale + (opts.max_scale - opts.min_scale) * index / (opts.num_layers - 1)


def ssd_anchors(opts: AnchorOptions) -> np.ndarray:
    """All anchors as a float32 array of rows (x_center, y_center, width, height)."""
    rows: list[tuple[float, float, float, float]] = []
    layer = 0
    while layer < opts.num_layers:
        sizes: list[tuple[float, float]] = []  # (width, height) of each box per cell
        last = layer
        while last < opts.num_layers and opts.strides[last] == opts.strides[layer]:
            scale = _scale(opts, last)
            if last == 0 and opts.reduce_boxes_in_lowest_layer:
                pairs = [(1.0, 0.1), (2.0, scale), (0.5, scale)]
            else:
                pairs = [(ratio, scale) for ratio in opts.aspect_ratios]
                if opts.interpolated_scale_aspect_ratio > 0:
                    following = 1.0 if last == opts.num_layers - 1 else _scale(opts, last + 1)
                    pairs.append((opts.interpolated_scale_aspect_ratio,
                                  math.sqrt(scale * following)))
            for ratio, s in pairs:
                root = math.sqrt(ratio)
                sizes.append((s * root, s / root))
            last += 1
        stride = opts.strides[layer]
        rows_n = math.ceil(opts.input_height / stride)
        cols_n = math.ceil(opts.input_width / stride)
        for y in range(rows_n):
            for x in range(cols_n):
                cx = (x + opts.anchor_offset_x) / cols_n
                cy = (y + opts.anchor_offset_y) / rows_n
                for w, h in sizes:
                    rows.append((cx, cy, 1.0, 1.0) if opts.fixed_anchor_size else (cx, cy, w, h))
        layer = last
    return np.asarray(rows, dtype=np.float32)
