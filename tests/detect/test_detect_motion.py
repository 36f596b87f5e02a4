"""Motion detection on synthetic clips with ground truth, through real H.264 and ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.detector import Detector
from inference.frames import decode_file
from inference.motion import MotionDetector, merge_boxes
from inference.pipeline import CameraPipeline
from inference.settings import DetectSettings
from tests.synthetic import encode, make_clip, to_i420

WARMUP = 3  # frames the detector needs before it reports


def overlaps(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def decoded(frames: list[np.ndarray], path: Path) -> list[np.ndarray]:
    """Encode with libx264, decode back with the real FrameReader: grey planes."""
    encode(frames, path, fps=5)
    out = [yuv[:360] for _, yuv in decode_file(path, 640, 360, 5, timeout=30)]
    assert len(out) == len(frames)
    return out


def score(frames: list[np.ndarray], truth: list) -> dict[str, float]:
    """Recall over (frame, moving object) pairs; false regions; frames with any motion."""
    md = MotionDetector(640, 360)
    hits = total = false_regions = regions = motion_frames = 0
    for i, (grey, boxes) in enumerate(zip(frames, truth, strict=True)):
        found = md.update(grey)
        if i < WARMUP:
            continue
        regions += len(found)
        motion_frames += bool(found)
        for box in boxes:
            total += 1
            hits += any(overlaps(box, r) for r in found)
        false_regions += sum(not any(overlaps(b, r) for b in boxes) for r in found)
    n = len(frames) - WARMUP
    return {"recall": hits / total if total else float("nan"),
            "false_region_rate": false_regions / max(regions, 1),
            "motion_frame_rate": motion_frames / n}


@pytest.mark.parametrize("kind", ["blobs", "blobs_at_dusk"])
def test_moving_blobs_are_found(kind: str, tmp_path: Path) -> None:
    clip = make_clip(seconds=10, fps=5, blobs=2, noise=4.0,
                     light_ramp=(1.0, 0.35) if kind == "blobs_at_dusk" else None)
    result = score(decoded(clip.frames, tmp_path / "c.mp4"), clip.truth)
    print(kind, result)
    assert result["recall"] >= 0.9
    assert result["false_region_rate"] <= 0.15  # the rest are short trails behind blobs


@pytest.mark.parametrize("kind,kwargs", [
    ("dusk_ramp", {"light_ramp": (1.0, 0.3)}),
    ("dawn_ramp", {"light_ramp": (0.3, 1.2)}),
    ("ir_switch", {"ir_switch_at": 5.0}),
    ("noise_sigma_10", {"noise": 10.0}),
])
def test_light_changes_and_noise_are_not_motion(kind: str, kwargs: dict,
                                                tmp_path: Path) -> None:
    clip = make_clip(seconds=10, fps=5, **kwargs)
    result = score(decoded(clip.frames, tmp_path / "c.mp4"), clip.truth)
    print(kind, result)
    assert result["motion_frame_rate"] <= 0.02


@pytest.mark.slow
def test_lighting_ramp_alone_never_runs_the_detector(models_dir: Path) -> None:
    detector = Detector(models_dir / "pose_detection.tflite")
    pipe = CameraPipeline("cam", DetectSettings(tamper={"enabled": False}), detector, 640, 360)
    clip = make_clip(seconds=12, fps=5, light_ramp=(1.0, 0.25), ir_switch_at=8.0)
    for i, grey in enumerate(clip.frames):
        pipe.process(to_i420(grey), 1000.0 + i / 5)
    assert pipe.stats.frames == 60
    assert pipe.stats.detector_runs == 0 and pipe.stats.skipped_by_motion == 60
    # while the same pipeline does run it when something moves
    moving = make_clip(seconds=2, fps=5, blobs=1)
    for i, grey in enumerate(moving.frames):
        pipe.process(to_i420(grey), 2000.0 + i / 5)
    assert pipe.stats.detector_runs > 0


def test_masked_area_gives_no_motion() -> None:
    clip = make_clip(seconds=6, fps=5, blobs=1, noise=3.0)
    whole = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    md = MotionDetector(640, 360, masks=[whole])
    assert not any(md.update(f) for f in clip.frames)


def test_merge_boxes_joins_neighbours_only() -> None:
    merged = merge_boxes([(0.1, 0.1, 0.2, 0.2), (0.21, 0.1, 0.3, 0.2), (0.7, 0.7, 0.8, 0.8)])
    assert sorted(merged) == [(0.1, 0.1, 0.3, 0.2), (0.7, 0.7, 0.8, 0.8)]
