"""The real models on real photos: anchors, decoders, thresholds.

Scores measured with pose_detection.tflite (letterboxed input): astronaut 0.81,
camera (the cameraman) 0.57, rocket 0.47, coffee 0.36, chelsea (a cat) 0.24. The alert
threshold 0.6 sits above every photo without a person with a margin of 0.13, and below
the astronaut; tracks take their best score over many frames (0.92 in the street clip).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from inference.anchors import FACE_SHORT_RANGE, POSE_DETECTION, AnchorOptions, ssd_anchors
from inference.detector import Detector, nms, read_labels

THRESHOLD = 0.6


@pytest.fixture(scope="module")
def person(models_dir: Path) -> Detector:
    return Detector(models_dir / "pose_detection.tflite", min_score=0.05)


def test_pose_anchors_match_the_model_layout() -> None:
    anchors = ssd_anchors(POSE_DETECTION)
    assert anchors.shape == (2254, 4)  # 28*28*2 + 14*14*2 + 7*7*6
    assert np.allclose(anchors[:, 2:], 1.0)  # fixed anchor size
    # first cell of the stride-8 layer: two anchors at (0.5/28, 0.5/28)
    assert np.allclose(anchors[0, :2], [0.5 / 28, 0.5 / 28])
    assert np.allclose(anchors[1, :2], anchors[0, :2])
    assert np.allclose(anchors[2, :2], [1.5 / 28, 0.5 / 28])  # row-major: x moves first
    # the three stride-32 layers are merged: 6 anchors per cell of a 7x7 map
    assert np.allclose(anchors[1568 + 392, :2], [0.5 / 7, 0.5 / 7])
    assert np.allclose(anchors[1568 + 392 + 5, :2], [0.5 / 7, 0.5 / 7])
    assert ssd_anchors(FACE_SHORT_RANGE).shape == (896, 4)  # 16*16*2 + 8*8*6


def test_anchor_sizes_without_fixed_size() -> None:
    opts = AnchorOptions(64, 64, 0.2, 0.8, (16, 32), fixed_anchor_size=False)
    anchors = ssd_anchors(opts)
    assert anchors.shape == (4 * 4 * 2 + 2 * 2 * 2, 4)
    assert np.allclose(anchors[0, 2:], [0.2, 0.2])  # layer 0 scale
    assert np.allclose(anchors[1, 2:], [0.4, 0.4])  # interpolated: sqrt(0.2 * 0.8)
    assert np.allclose(anchors[-1, 2:], [0.8 ** 0.5] * 2)  # last layer: sqrt(0.8 * 1.0)


def test_person_found_in_astronaut(person: Detector) -> None:
    found = person.detect(data.astronaut())
    assert found and found[0].label == "person"
    assert found[0].score >= THRESHOLD
    x0, y0, x1, y1 = found[0].box
    # the box holds her face (at about x 0.45, y 0.25 of the photo) and most of the photo
    assert x0 < 0.4 < 0.5 < x1 and y0 < 0.2 < 0.3 < y1
    assert (x1 - x0) * (y1 - y0) > 0.4


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_nothing_above_threshold_without_a_person(person: Detector, name: str) -> None:
    found = person.detect(getattr(data, name)())
    assert all(d.score < THRESHOLD for d in found), found  # none found is the good case


def test_face_model_decodes_with_its_own_anchors(models_dir: Path) -> None:
    faces = Detector(models_dir / "face_detection_short_range.tflite", min_score=0.5)
    found = faces.detect(data.astronaut())
    assert len(found) == 1 and found[0].label == "face" and found[0].score > 0.8
    x0, y0, x1, y1 = found[0].box
    assert 0.3 < x0 < x1 < 0.6 and 0.1 < y0 < y1 < 0.4


def test_crop_of_the_person_is_found_with_a_smaller_person(person: Detector) -> None:
    """The person at 180 px in a 224 px crop, as the pipeline cuts it."""
    import cv2

    canvas = np.full((224, 224, 3), 90, np.uint8)
    canvas[22:202, 22:202] = cv2.resize(data.astronaut(), (180, 180))
    assert person.detect(canvas)[0].score >= THRESHOLD


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 1, 1], [0.05, 0, 1, 1], [2, 2, 3, 3]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.4], np.float32), 0.35, 10)
    assert keep == [1, 2]


def test_labels_file_formats(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_text("person\nbicycle\ncar\n")
    assert read_labels(plain) == ["person", "bicycle", "car"]
    numbered = tmp_path / "b.txt"
    numbered.write_text("0 person\n2 car\n")
    assert read_labels(numbered) == ["person", "", "car"]


class FakeSsdOutputs:
    """The four tensors of a TFLite_Detection_PostProcess output (no COCO model ships here)."""

    def __init__(self) -> None:
        self.tensors = {
            0: np.array([[[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 1.2, 1.0], [0, 0, 0, 0]]], np.float32),
            1: np.array([[0.0, 2.0, 0.0]], np.float32),
            2: np.array([[0.9, 0.55, 0.1]], np.float32),
            3: np.array([2.0], np.float32),
        }

    def get_tensor(self, index: int) -> np.ndarray:
        return self.tensors[index]


def test_ssd_postprocess_decoder() -> None:
    det = Detector.__new__(Detector)
    det.interpreter = FakeSsdOutputs()
    det.outputs = [{"index": i} for i in range(4)]
    det.labels = ["person", "bicycle", "car"]
    det.min_score, det.max_results = 0.5, 10
    found = det._decode_ssd()
    assert [(d.label, d.score) for d in found] == [("person", pytest.approx(0.9)),
                                                   ("car", pytest.approx(0.55))]
    assert found[0].box == pytest.approx((0.2, 0.1, 0.4, 0.5))  # x0, y0, x1, y1
    assert found[1].box == pytest.approx((0.0, 0.0, 1.0, 1.0))  # clipped
