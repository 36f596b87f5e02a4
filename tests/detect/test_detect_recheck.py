"""A person who walks in and stands still stays one track, re-checked about once a second."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from inference.detector import Detector
from inference.pipeline import CameraPipeline
from inference.settings import DetectSettings
from tests.synthetic import scene

FPS = 5


def frames() -> list[np.ndarray]:
    """Empty street 2 s, a person steps in (1 s), stands 10 s, leaves; empty 4 s."""
    grey = scene(640, 360).astype(np.uint8)
    street = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
    person = cv2.resize(data.astronaut(), (180, 180))
    rng = np.random.default_rng(2)
    out = []
    positions = [None] * 10 + [40 * i for i in range(1, 6)] + [200] * 50 + [None] * 20
    for x in positions:
        rgb = street.copy()
        if x is not None:
            rgb[150:330, x:x + 180] = person
        noisy = np.clip(rgb + rng.normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)
        out.append(cv2.cvtColor(noisy, cv2.COLOR_RGB2YUV_I420))
    return out


@pytest.mark.slow
def test_standing_person_is_one_track_rechecked_at_a_low_rate(models_dir: Path) -> None:
    detector = Detector(models_dir / "pose_detection.tflite")
    reports = []
    pipe = CameraPipeline("gate", DetectSettings(tamper={"enabled": False}), detector, 640, 360,
                          on_track=reports.append)
    runs_at = []
    for i, yuv in enumerate(frames()):
        pipe.process(yuv, 100.0 + i / FPS)
        runs_at.append(pipe.stats.detector_runs)
    assert [r.phase for r in reports if r.phase != "update"] == ["start", "end"]
    assert pipe.tracker.total == 1
    # standing still (frames 20..64, 9 s): re-checks about once a second, not every frame
    still_runs = runs_at[64] - runs_at[20]
    print("detector runs while standing:", still_runs, "ended", reports[-1].ended)
    assert 6 <= still_runs <= 14, still_runs
    # the track ends after the person left (last seen at frame 64 or a re-check just before)
    end = reports[-1]
    assert end.ended is not None and end.ended >= 100.0 + 60 / FPS
    assert pipe.tracker.tracks == []
