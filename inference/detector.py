"""Object detection with a TensorFlow Lite model: load, invoke, decode.

Two output layouts are understood:

- ``ssd``: the 4-tensor TFLite_Detection_PostProcess output of the COCO SSD models
  (boxes [1,N,4] as ymin, xmin, ymax, xmax in 0..1; classes [1,N]; scores [1,N]; count [1]);
- ``mediapipe``: MediaPipe's anchor-based single-shot detectors (raw regressors [1,N,K]
  and logits [1,N,1]) decoded against anchors generated as MediaPipe does
  (`inference.anchors`), then non-maximum suppression.

`model_type="auto"` picks by the number of outputs. The interpreter comes from
`ai_edge_litert` when installed (faster), else `tflite_runtime`; `delegate="edgetpu"`
loads the Coral delegate (an EdgeTPU-compiled model is then required).

Example::

    det = Detector(Path("pose_detection.tflite"), num_threads=2)
    for d in det.detect(rgb_square_image):   # HxWx3 uint8, any size
        print(d.label, d.score, d.box)        # box: x0, y0, x1, y1 in 0..1 of the image
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.anchors import FACE_SHORT_RANGE, POSE_DETECTION, AnchorOptions, ssd_anchors

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 normalised to the image


@dataclass(frozen=True)
class Detection:
    """One object found in an image; `box` is x0, y0, x1, y1 in 0..1 of that image."""

    label: str
    score: float
    box: Box


def load_interpreter(model: Path, num_threads: int = 2, delegate: str = "cpu",
                     device: str | None = None) -> Any:
    """A TFLite `Interpreter` with its tensors allocated (ai_edge_litert preferred)."""
    try:
        from ai_edge_litert import interpreter as tfl  # type: ignore[import-not-found]
    except ImportError:
        from tflite_runtime import interpreter as tfl  # type: ignore[import-not-found]
    delegates = []
    if delegate == "edgetpu":
        options = {"device": device} if device else {}
        delegates.append(tfl.load_delegate("libedgetpu.so.1", options))
    interp = tfl.Interpreter(model_path=str(model), num_threads=num_threads,
                             experimental_delegates=delegates or None)
    interp.allocate_tensors()
    return interp


def read_labels(path: Path | None) -> list[str]:
    """Labels file: one label per line (line n = class n); `n label` lines also accepted."""
    if path is None:
        return []
    labels: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[0].isdigit():
            index = int(parts[0])
            labels += [""] * (index + 1 - len(labels))
            labels[index] = parts[1]
        else:
            labels.append(line.strip())
    return labels


@dataclass(frozen=True)
class MediaPipeLayout:
    """How to read one MediaPipe detector's outputs (TensorsToDetectionsCalculator options)."""

    anchors: AnchorOptions
    label: str
    keypoints: int
    # Where the object's box comes from: "box" (the regressed box) or "pose" (BlazePose's
    # detector regresses a face box; the body is the circle centred on keypoint 0, the hips,
    # through keypoint 1).
    box_from: str = "box"


MEDIAPIPE_MODELS = {
    2254: MediaPipeLayout(POSE_DETECTION, "person", 4, "pose"),
    896: MediaPipeLayout(FACE_SHORT_RANGE, "face", 6, "box"),
}


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores)
    keep: list[int] = []
    while order.size and len(keep) < limit:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        x0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        y0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        x1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        y1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        union = area(boxes[i]) + area(boxes[rest]) - inter
        order = rest[inter / np.maximum(union, 1e-9) <= iou]
    return keep


class Detector:
    """A TFLite detector that takes an RGB image and returns `Detection`s above a floor.

    `min_score` is the floor for what `detect` returns (keep it below the alert threshold
    so that tracks see their weaker frames too).
    """

    def __init__(self, model: Path, *, labels: Path | None = None, model_type: str = "auto",
                 num_threads: int = 2, delegate: str = "cpu", device: str | None = None,
                 min_score: float = 0.3, max_results: int = 10) -> None:
        self.interpreter = load_interpreter(model, num_threads, delegate, device)
        self.min_score = min_score
        self.max_results = max_results
        inp = self.interpreter.get_input_details()[0]
        self._input_index = inp["index"]
        self.input_height, self.input_width = int(inp["shape"][1]), int(inp["shape"][2])
        self.input_dtype = inp["dtype"]
        self._quant = inp.get("quantization", (0.0, 0))
        self.outputs = self.interpreter.get_output_details()
        self.labels = read_labels(labels)
        if model_type == "auto":
            model_type = "ssd" if len(self.outputs) == 4 else "mediapipe"
        self.model_type = model_type
        self._layout: MediaPipeLayout | None = None
        if model_type == "mediapipe":
            shapes = sorted((tuple(o["shape"]) for o in self.outputs), key=lambda s: s[-1])
            count = int(shapes[0][1])
            if count not in MEDIAPIPE_MODELS:
                raise ValueError(f"{model.name}: unknown MediaPipe detector with {count} anchors")
            self._layout = MEDIAPIPE_MODELS[count]
            self._anchors = ssd_anchors(self._layout.anchors)
            by_width = sorted(self.outputs, key=lambda o: o["shape"][-1])
            self._score_index, self._box_index = by_width[0]["index"], by_width[-1]["index"]
        elif model_type != "ssd":
            raise ValueError(f"unknown model type {model_type!r} (auto, ssd or mediapipe)")

    @property
    def input_size(self) -> int:
        """The model's (square) input side in pixels."""
        return self.input_width

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """Resize `rgb` to the model input and convert to its dtype and value range."""
        if rgb.shape[:2] != (self.input_height, self.input_width):
            # bilinear: crops are at most ~1.6x the input, where it is as good as area
            # averaging and several times faster
            rgb = cv2.resize(rgb, (self.input_width, self.input_height),
                             interpolation=cv2.INTER_LINEAR)
        if self.input_dtype == np.float32:  # both layouts take [-1, 1]
            return (rgb.astype(np.float32) * (2 / 255.0) - 1.0)[None]
        return rgb[None].astype(self.input_dtype)

    def _fill_input(self, rgb: np.ndarray) -> None:
        """Write `rgb` into the interpreter's input tensor in place (no extra copies)."""
        if rgb.shape[:2] != (self.input_height, self.input_width):
            rgb = cv2.resize(rgb, (self.input_width, self.input_height),
                             interpolation=cv2.INTER_LINEAR)
        target = self.interpreter.tensor(self._input_index)()[0]  # a view of the input
        if self.input_dtype == np.float32:
            np.multiply(rgb, np.float32(2 / 255.0), out=target, casting="unsafe")
            target -= np.float32(1.0)
        else:
            target[...] = rgb
        del target  # the interpreter refuses to run while views of its buffers live

    def invoke(self, tensor: np.ndarray) -> None:
        """Run the model on an already prepared input tensor."""
        self.interpreter.set_tensor(self._input_index, tensor)
        self.interpreter.invoke()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detections in `rgb` (HxWx3 uint8) with score >= `min_score`.

        A non-square image is letterboxed (padded, not stretched, as MediaPipe does) and
        the boxes are mapped back to the image.
        """
        h, w = rgb.shape[:2]
        if h != w:
            side = max(h, w)
            square = np.zeros((side, side, 3), np.uint8)
            square[:h, :w] = rgb
            sx, sy = side / w, side / h
            return [Detection(d.label, d.score,
                              (d.box[0] * sx, d.box[1] * sy,
                               min(1.0, d.box[2] * sx), min(1.0, d.box[3] * sy)))
                    for d in self.detect(square)]
        self._fill_input(rgb)
        self.interpreter.invoke()
        if self._layout is not None:
            return self._decode_mediapipe()
        return self._decode_ssd()

    # -- decoders --------------------------------------------------------------------
    def _decode_ssd(self) -> list[Detection]:
        get = self.interpreter.get_tensor
        tensors = [get(o["index"]) for o in self.outputs]
        boxes = next(t for t in tensors if t.ndim == 3 and t.shape[-1] == 4)[0]
        flat = [t for t in tensors if t.ndim == 2]
        count = int(next(t for t in tensors if t.size == 1).ravel()[0])
        # classes are whole numbers, scores are not: tell them apart by content
        classes, scores = sorted(flat, key=lambda t: float(np.abs(t - np.round(t)).sum()))
        out = []
        for i in range(min(count, boxes.shape[0])):
            score = float(scores[0, i])
            if score < self.min_score:
                continue
            cls = int(classes[0, i])
            label = self.labels[cls] if cls < len(self.labels) else str(cls)
            y0, x0, y1, x1 = (float(v) for v in np.clip(boxes[i], 0.0, 1.0))
            out.append(Detection(label, score, (x0, y0, x1, y1)))
        return out[: self.max_results]

    def _decode_mediapipe(self) -> list[Detection]:
        layout = self._layout
        assert layout is not None
        # views of the output buffers (no copy of all 2254 rows); only picked rows are copied
        logits = self.interpreter.tensor(self._score_index)()[0, :, 0]
        floor = math.log(self.min_score / (1 - self.min_score))  # sigmoid(x) >= min_score
        picked = np.nonzero(logits >= floor)[0]
        if picked.size == 0:
            return []
        logits = logits[picked]
        raw = self.interpreter.tensor(self._box_index)()[0, picked]
        anchors = self._anchors[picked]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -100, 100)))
        size_x, size_y = float(self.input_width), float(self.input_height)
        if layout.box_from == "pose":
            hip_x = raw[:, 4] / size_x * anchors[:, 2] + anchors[:, 0]
            hip_y = raw[:, 5] / size_y * anchors[:, 3] + anchors[:, 1]
            top_x = raw[:, 6] / size_x * anchors[:, 2] + anchors[:, 0]
            top_y = raw[:, 7] / size_y * anchors[:, 3] + anchors[:, 1]
            radius = np.hypot(top_x - hip_x, top_y - hip_y)
            # face box (regressed) united with the body circle's vertical extent; a body is
            # about half as wide as it is tall
            cx = raw[:, 0] / size_x * anchors[:, 2] + anchors[:, 0]
            cy = raw[:, 1] / size_y * anchors[:, 3] + anchors[:, 1]
            w = raw[:, 2] / size_x * anchors[:, 2]
            h = raw[:, 3] / size_y * anchors[:, 3]
            boxes = np.stack([
                np.minimum(cx - w / 2, hip_x - radius * 0.5),
                np.minimum(cy - h / 2, hip_y - radius),
                np.maximum(cx + w / 2, hip_x + radius * 0.5),
                np.maximum(cy + h / 2, hip_y + radius),
            ], axis=1)
        else:
            cx = raw[:, 0] / size_x * anchors[:, 2] + anchors[:, 0]
            cy = raw[:, 1] / size_y * anchors[:, 3] + anchors[:, 1]
            w = raw[:, 2] / size_x * anchors[:, 2]
            h = raw[:, 3] / size_y * anchors[:, 3]
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        boxes = np.clip(boxes, 0.0, 1.0)
        keep = nms(boxes, scores, 0.35, self.max_results)
        return [Detection(layout.label, float(scores[i]), tuple(float(v) for v in boxes[i]))
                for i in keep]
