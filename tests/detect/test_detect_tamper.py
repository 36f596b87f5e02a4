"""Tamper: a covered (black), blurred and turned (shifted) camera each raise one tamper
event after the persistence time and one end when the view is back."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from drivers.cameras.base import StreamInput
from firmware.bus import EventBus
from firmware.events import TamperEvent
from firmware.wiring.detect import DetectService
from inference.settings import DetectSettings
from inference.tamper import TamperDetector
from tests.synthetic import encode
from tests.waiting import all_of, wait_for

FPS = 5


def view() -> np.ndarray:
    grey = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (640, 360), interpolation=cv2.INTER_AREA)


def segment(img: np.ndarray, seconds: float, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
            for _ in range(int(seconds * FPS))]


@pytest.mark.slow
def test_black_blur_and_shift_each_raise_one_tamper_event(models_dir: Path,
                                                          tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    normal = view().astype(np.float32)
    black = np.full_like(normal, 4)
    blurred = cv2.GaussianBlur(normal, (0, 0), 5)
    shifted = np.roll(normal, 90, axis=1)
    frames: list[np.ndarray] = []
    for img in (normal, black, normal, blurred, normal, shifted, normal):
        frames += segment(img, 6, rng)
    clip = encode(frames, tmp_path / "tamper.mp4", fps=FPS)

    bus = EventBus()
    events: list[TamperEvent] = []
    lock = threading.Lock()

    def keep(event: TamperEvent) -> None:
        with lock:
            events.append(event)

    bus.subscribe(TamperEvent, keep)
    bus.start()
    settings = DetectSettings(enabled=True, model=models_dir / "pose_detection.tflite",
                              fps=FPS, tamper={"persist_s": 2.0, "learn_s": 2.0})
    service = DetectService(bus, settings, {"door": StreamInput(str(clip))},
                            drop_when_full=False, stream_clock=True, restart_delay_s=600)
    service.start()

    def processed() -> bool:
        reader = service.readers.get("door")
        return reader is not None and reader.streams_ended and not reader.pool.pending()

    try:
        wait_for(processed, 60, "the whole clip processed")
    finally:
        service.stop()
    bus.stop()
    got = [(e.kind, e.phase) for e in events]
    assert got == [("covered", "start"), ("covered", "end"),
                   ("blurred", "start"), ("blurred", "end"),
                   ("moved", "start"), ("moved", "end")]
    assert all_of(events, lambda e: e.camera == "door" and e.snapshot, "tamper events")
    # starts come persist_s after their segment began; segments are 6 s: 12 s apart
    t0 = events[0].ts - (6 + 2)
    for event, segment_start in zip(events[::2], (6, 18, 30), strict=True):
        assert event.ts - t0 == pytest.approx(segment_start + 2, abs=1.0)


def test_short_occlusion_is_not_tamper() -> None:
    rng = np.random.default_rng(4)
    normal = view().astype(np.float32)
    tamper = TamperDetector(persist_s=5.0, check_fps=5, learn_s=2.0)
    seq = segment(normal, 4, rng) + segment(np.full_like(normal, 3), 3, rng) \
        + segment(normal, 8, rng)
    out = [e for i, f in enumerate(seq) for e in tamper.update(f, i / FPS)]
    assert out == []


def test_dimming_is_neither_covered_nor_blurred() -> None:
    rng = np.random.default_rng(5)
    normal = view().astype(np.float32)
    tamper = TamperDetector(persist_s=1.0, check_fps=5, learn_s=2.0)
    seq = segment(normal, 3, rng)
    seq += [np.clip(normal * g + rng.normal(0, 3, normal.shape), 0, 255).astype(np.uint8)
            for g in np.linspace(1.0, 0.3, 40)]
    out = [e for i, f in enumerate(seq) for e in tamper.update(f, i / FPS)]
    assert out == [], tamper.figures
