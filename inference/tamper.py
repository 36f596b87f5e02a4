"""Camera tamper: covered, out of focus, or turned away, with persistence.

Three measures on the grey picture, a few times a second:

- **covered**: contrast (grey-level standard deviation) collapses: a lens taped, sprayed,
  a bag over the camera, or the picture black. Night is dark but not flat.
- **blurred**: sharpness (variance of the Laplacian over the grey variance, so that
  dimming is not blurring) falls below `blur_ratio` of the sharpness learnt over
  normal frames (a slow average, so dusk is followed).
- **moved**: the normalised correlation of a small, smoothed picture with the reference
  view falls below `moved_match`. Correlation ignores brightness and contrast, so light
  changes do not look like a move; the reference follows slow changes while it matches.

A condition must hold for `persist_s` before a `start` and be gone for `persist_s` before
the `end`, so a bus parked in front of the camera for two seconds is not tamper. The
conditions are checked in that order and exclusive: a covered camera is not also blurred.

Example::

    tamper = TamperDetector()
    for kind, phase in tamper.update(frame.grey, time.monotonic()):
        print(kind, phase)     # "covered" "start"
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("covered", "blurred", "moved")


class TamperDetector:
    """Watch one camera's grey frames; `update` returns (kind, phase) transitions."""

    def __init__(self, *, persist_s: float = 10.0, check_fps: float = 1.0,
                 covered_contrast: float = 6.0, blur_ratio: float = 0.3,
                 moved_match: float = 0.6, learn_s: float = 5.0) -> None:
        self.persist_s = persist_s
        self.check_interval = 1.0 / check_fps
        self.covered_contrast = covered_contrast
        self.blur_ratio = blur_ratio
        self.moved_match = moved_match
        self.learn_s = learn_s
        self.active: dict[str, bool] = dict.fromkeys(KINDS, False)
        self._since: dict[str, float | None] = dict.fromkeys(KINDS, None)
        self._started: float | None = None
        self._last_check = -1e18
        self.sharpness_ref: float | None = None
        self.reference: np.ndarray | None = None
        self.figures: dict[str, float] = {}

    def measure(self, grey: np.ndarray) -> tuple[float, float, np.ndarray]:
        """(contrast, sharpness, small normalised picture) of a grey frame."""
        h, w = grey.shape
        mid = cv2.resize(grey, (320, max(8, round(h * 320 / w))), interpolation=cv2.INTER_AREA)
        # Laplacian energy per unit of contrast: dimming the picture does not blur it
        sharpness = float(cv2.Laplacian(mid, cv2.CV_32F).var()) / max(float(mid.std()), 1.0) ** 2
        small = cv2.resize(mid, (64, max(8, round(h * 64 / w))), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small.astype(np.float32), (3, 3), 0)
        contrast = float(small.std())
        norm = (small - small.mean()) / max(contrast, 1e-3)
        return contrast, sharpness, norm

    def update(self, grey: np.ndarray, now: float) -> list[tuple[str, str]]:
        """Feed a frame; returns the tamper starts and ends that happen now.

        `now` only measures durations (check interval, learning, persistence): give it a
        monotonic clock, not wall time, which NTP may step backwards."""
        if now - self._last_check < self.check_interval:
            return []
        self._last_check = now
        if self._started is None:
            self._started = now
        contrast, sharpness, norm = self.measure(grey)
        covered = contrast < self.covered_contrast
        match = 1.0
        if self.reference is not None and not covered:
            match = float((norm * self.reference).mean())
        blurred = (not covered and self.sharpness_ref is not None
                   and sharpness < self.blur_ratio * self.sharpness_ref)
        moved = not covered and not blurred and match < self.moved_match
        self.figures = {"contrast": round(contrast, 2), "sharpness": round(sharpness, 3),
                        "match": round(match, 3)}
        conditions = {"covered": covered, "blurred": blurred, "moved": moved}
        normal = not any(conditions.values())
        learning = now - self._started < self.learn_s
        if normal and not any(self.active.values()):
            rate = 0.5 if learning else 0.02
            self.sharpness_ref = sharpness if self.sharpness_ref is None else (
                self.sharpness_ref + rate * (sharpness - self.sharpness_ref))
            if self.reference is None:
                self.reference = norm
            else:
                mixed = self.reference + rate * (norm - self.reference)
                self.reference = (mixed - mixed.mean()) / max(float(mixed.std()), 1e-3)
        if learning:
            return []
        out = []
        for kind, present in conditions.items():
            if present != self.active[kind]:
                since = self._since[kind]
                if since is None:
                    self._since[kind] = now
                elif now - since >= self.persist_s:
                    self.active[kind] = present
                    self._since[kind] = None
                    out.append((kind, "start" if present else "end"))
            else:
                self._since[kind] = None
        return out
