"""Tracks: the same object seen in successive frames keeps one identity.

Greedy IoU matching (best overlapping pairs first, same label), with a centroid fallback
for small fast objects whose boxes stop overlapping at 5 fps. A track that has not been
seen for `lost_after_s` ends. Each track keeps its best score and a copy of the frame in
which it scored best, for the event snapshot.

Two clocks: `now` (wall time) stamps the track (`first_seen`, `last_seen`: what events
carry), `mono` (a monotonic clock, `time.monotonic()` on a live camera) measures every
duration: how long unseen, velocity. A Pi without an RTC steps its wall clock (often
backwards) when NTP syncs after boot; durations on the wall clock would then not end a
track for as long as the step. Without `mono`, `now` serves as both (files, tests).

Example::

    tracker = Tracker(lost_after_s=3.0)
    started, seen, ended = tracker.update(detections, time.time(), frame, time.monotonic())
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import numpy as np

from inference.detector import Box, Detection


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


@dataclass(eq=False)  # identity: comparing fields would compare whole frames
class Track:
    """One object over time. `id` is the track's event id (stable start to end).

    `first_seen`/`last_seen` are wall time (for events); `seen_mono`, `last_checked` and
    `last_event` are on the monotonic clock (for durations)."""

    label: str
    box: Box
    score: float
    first_seen: float
    last_seen: float
    seen_mono: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    number: int = 0
    best_score: float = 0.0
    best_box: Box = (0.0, 0.0, 0.0, 0.0)
    best_frame: np.ndarray | None = field(default=None, repr=False)
    max_area: float = 0.0
    hits: int = 0
    last_checked: float = 0.0
    zones: list[str] = field(default_factory=list)
    alerting: bool = False
    last_event: float = 0.0
    sent_state: tuple = ()
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, fraction of picture per second

    def observe(self, det: Detection, now: float, frame: np.ndarray | None,
                mono: float | None = None) -> None:
        """A detection of this track at `now` (wall) / `mono` (monotonic, default `now`);
        `frame` is kept (copied) if it is the best."""
        mono = now if mono is None else mono
        dt = mono - self.seen_mono
        if self.hits and dt > 0:
            vx = ((det.box[0] + det.box[2]) - (self.box[0] + self.box[2])) / 2 / dt
            vy = ((det.box[1] + det.box[3]) - (self.box[1] + self.box[3])) / 2 / dt
            self.velocity = (0.5 * self.velocity[0] + 0.5 * vx, 0.5 * self.velocity[1] + 0.5 * vy)
        self.box, self.score, self.last_seen = det.box, det.score, now
        self.seen_mono, self.last_checked = mono, mono
        self.hits += 1
        self.max_area = max(self.max_area, area(det.box))
        if det.score > self.best_score:
            self.best_score, self.best_box = det.score, det.box
            if frame is not None:
                self.best_frame = frame.copy()


    def predicted(self, mono: float) -> Box:
        """Where the box should be at `mono` (monotonic clock), moving at its recent speed
        (capped at 1 s)."""
        dt = min(max(mono - self.seen_mono, 0.0), 1.0)
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        return (self.box[0] + dx, self.box[1] + dy, self.box[2] + dx, self.box[3] + dy)


class Tracker:
    """Assign detections to tracks; end tracks not seen for `lost_after_s`."""

    def __init__(self, *, min_iou: float = 0.15, lost_after_s: float = 3.0) -> None:
        self.min_iou = min_iou
        self.lost_after_s = lost_after_s
        self.tracks: list[Track] = []
        self._numbers = itertools.count(1)
        self.total = 0

    def update(self, detections: list[Detection], now: float,
               frame: np.ndarray | None = None, mono: float | None = None,
               ) -> tuple[list[Track], list[Track], list[Track]]:
        """Match `detections` (frame coordinates) to tracks: (started, seen, ended).

        `now` is wall time, `mono` the monotonic clock for durations (default `now`).
        `update([], now, mono=...)` with no frame ends the tracks unseen too long."""
        mono = now if mono is None else mono
        pairs = []
        for ti, track in enumerate(self.tracks):
            for di, det in enumerate(detections):
                if det.label != track.label:
                    continue
                overlap = iou(track.box, det.box)
                if overlap < self.min_iou:
                    overlap = self._near(track.box, det.box)
                if overlap > 0:
                    pairs.append((overlap, ti, di))
        pairs.sort(reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        seen: list[Track] = []
        for _, ti, di in pairs:
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            self.tracks[ti].observe(detections[di], now, frame, mono)
            seen.append(self.tracks[ti])
        started = []
        for di, det in enumerate(detections):
            if di in used_d:
                continue
            track = Track(det.label, det.box, det.score, now, now, mono,
                          number=next(self._numbers))
            track.observe(det, now, frame, mono)
            self.tracks.append(track)
            started.append(track)
            self.total += 1
        ended = [t for t in self.tracks if mono - t.seen_mono > self.lost_after_s]
        self.tracks = [t for t in self.tracks if t not in ended]
        return started, seen, ended

    def end_all(self) -> list[Track]:
        """End every live track (camera stopped)."""
        ended, self.tracks = self.tracks, []
        return ended

    def _near(self, a: Box, b: Box) -> float:
        """A small score (< min_iou) when centres are within half a box size, else 0."""
        ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
        bx, by = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        reach = 0.5 * max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
        dist = ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5
        return self.min_iou * (1 - dist / reach) * 0.5 if dist < reach else 0.0
