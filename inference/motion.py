"""Cheap motion detection: where did the picture change, ignoring light and noise?

Per frame: the grey (Y) plane is shrunk to `width` pixels wide (area averaging, which
also averages sensor noise away) and blurred; masked pixels are ignored. The frame's
grey levels are mapped onto the background's by matching their quantiles, so a slow
dusk, an exposure step, a cloud or the gamma change of IR switching does not read as
motion (rank statistics barely notice the few pixels that really move).
The absolute difference against a running-average background is thresholded, dilated
and cut into contours; those larger than `min_area` become motion regions. When more
than `global_change` of the picture still changes at once (headlights sweeping the whole
view, a non-monotonic IR switch) the background is re-learnt from this frame and no
motion is reported: a scene-wide change is not an object.

Example::

    md = MotionDetector(640, 360)
    regions = md.update(frame.grey)        # list of (x0, y0, x1, y1) in 0..1
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

Box = tuple[float, float, float, float]
_QUANTILES = np.linspace(2, 98, 17)
_RAMP = np.arange(17) * 1e-3  # keeps the quantiles strictly increasing for interp
_LEVELS = np.arange(256, dtype=np.float32)


class MotionDetector:
    """Running-background motion detector on a downscaled grey frame."""

    def __init__(self, frame_width: int, frame_height: int, *, width: int = 160,
                 threshold: int = 20, min_area: float = 0.0015, alpha: float = 0.05,
                 global_change: float = 0.6, masks: Sequence[Sequence[Sequence[float]]] = (),
                 warmup_frames: int = 2) -> None:
        self.width = width
        self.height = max(8, round(frame_height * width / frame_width))
        self.threshold = threshold
        self.min_area = min_area
        self.alpha = alpha
        self.global_change = global_change
        self.warmup_frames = warmup_frames
        self.mask = np.ones((self.height, self.width), np.uint8)
        for poly in masks:
            pts = np.array([[x * self.width, y * self.height] for x, y in poly], np.int32)
            cv2.fillPoly(self.mask, [pts], 0)
        self._keep = self.mask.astype(bool)
        self._sample = np.zeros_like(self._keep)
        self._sample[::2, ::2] = self._keep[::2, ::2]  # 1 pixel in 4 is enough for quantiles
        self._sample_u8 = self._sample.astype(np.uint8)
        self._sample_any = bool(self._sample.any())
        self._keep_count = max(int(self._keep.sum()), 1)
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.frames = 0
        self.changed_fraction = 0.0

    def _small(self, grey: np.ndarray) -> np.ndarray:
        small = cv2.resize(grey, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (5, 5), 0)  # uint8

    def _quantiles(self, image: np.ndarray) -> np.ndarray:
        """Grey levels at `_QUANTILES` percent of the unmasked pixels (from a histogram)."""
        hist = cv2.calcHist([image], [0], self._sample_u8, [256], [0, 256]).ravel()
        cdf = np.cumsum(hist)
        return np.searchsorted(cdf, _QUANTILES / 100.0 * cdf[-1]).astype(np.float32)

    def update(self, grey: np.ndarray) -> list[Box]:
        """Feed one grey frame (full detect size); returns the motion regions in it."""
        self.frames += 1
        if not self._sample_any:  # everything masked
            return []
        small = self._small(grey)
        if self._background is None:
            self._background = small.astype(np.float32)
            return []
        bg = self._background
        keep = self._keep
        # global light change: map the frame's grey levels onto the background's through
        # their quantiles (histogram matching). That undoes any monotonic change of the
        # whole picture (dusk, exposure, gamma when IR switches) and, being rank-based, is
        # barely moved by the few pixels that really change.
        # (a 256-entry lookup table applied to the uint8 picture: cheap)
        fq = self._quantiles(small)
        bq = self._quantiles(cv2.convertScaleAbs(bg))
        lut = np.interp(_LEVELS, np.maximum.accumulate(fq) + _RAMP, bq).astype(np.float32)
        matched = lut[small]
        diff = cv2.absdiff(matched, bg)
        moving = ((diff > self.threshold) & keep).astype(np.uint8)
        self.changed_fraction = float(moving.sum()) / self._keep_count
        if self.changed_fraction > self.global_change:
            self._background = small.astype(np.float32)
            self._previous = None
            return []
        # learn the background everywhere at `alpha`: what stops moving (a parked motorbike)
        # and ghosts (where something was, learnt in) fade in about 1/alpha frames. The
        # first frames average in equally, so what moved at start leaves no ghost.
        cv2.accumulateWeighted(small, bg, max(self.alpha, 1.0 / self.frames))
        previous, self._previous = self._previous, matched
        if self.frames <= self.warmup_frames or previous is None:
            return []
        # Keep only differences from the background near something that changed since the
        # last frame: a ghost (where a thing stood while it was learnt in, now gone) or a
        # thing that stopped differs from the background but not from the last frame.
        # Stopped objects that matter are tracks, and tracks are re-checked anyway.
        changing = (cv2.absdiff(matched, previous) > self.threshold / 2).astype(np.uint8)
        changing = cv2.dilate(changing, self._kernel, iterations=3)
        moving = cv2.dilate(moving & changing, self._kernel, iterations=2)
        contours, _ = cv2.findContours(moving, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        total = float(self.width * self.height)
        regions: list[Box] = []
        for c in contours:
            x, y, w, h = cv2.boundingRect(c)
            if w * h / total < self.min_area:
                continue
            regions.append((x / self.width, y / self.height,
                            (x + w) / self.width, (y + h) / self.height))
        return merge_boxes(regions)


def merge_boxes(boxes: list[Box], gap: float = 0.02) -> list[Box]:
    """Merge boxes that overlap or lie within `gap` of each other, until none do."""
    boxes = list(boxes)
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        out: list[Box] = []
        for box in boxes:
            for i, other in enumerate(out):
                if (box[0] <= other[2] + gap and other[0] <= box[2] + gap
                        and box[1] <= other[3] + gap and other[1] <= box[3] + gap):
                    out[i] = (min(box[0], other[0]), min(box[1], other[1]),
                              max(box[2], other[2]), max(box[3], other[3]))
                    merged = True
                    break
            else:
                out.append(box)
        boxes = out
    return boxes
