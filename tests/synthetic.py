"""Synthetic grey clips with ground truth, for motion tests and benches (not installed:
the test tree is not part of the wheel; bench/ imports it from here).

A static textured scene (fixed seed) with optional moving blobs, a lighting ramp (dusk,
exposure), a sudden IR-like switch, and sensor noise. Each clip is a list of grey frames
and, per frame, the boxes (0..1) of what really moves. `encode` writes a clip as H.264 with
ffmpeg so that tests see real codec artifacts when they decode it back.

Example::

    clip = make_clip(seconds=10, fps=5, blobs=2, noise=4.0)
    encode(clip.frames, Path("blobs.mp4"), fps=5)
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

Box = tuple[float, float, float, float]


@dataclass
class Clip:
    """Frames and ground truth: `truth[i]` lists the boxes moving in frame i."""

    frames: list[np.ndarray] = field(default_factory=list)
    truth: list[list[Box]] = field(default_factory=list)


def scene(width: int = 640, height: int = 360, seed: int = 1) -> np.ndarray:
    """A still grey street-like scene: smooth shading, blocks, fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    img = 90 + 40 * np.sin(xx / 97.0) * np.cos(yy / 53.0)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width - 60)), int(rng.integers(0, height - 40))
        w, h = int(rng.integers(30, 160)), int(rng.integers(20, 120))
        img[y0:y0 + h, x0:x0 + w] = rng.uniform(40, 200)
    texture = cv2.GaussianBlur(rng.normal(0, 12, (height, width)).astype(np.float32), (0, 0), 1.2)
    return np.clip(img + texture, 0, 255).astype(np.float32)


def make_clip(*, seconds: float = 10.0, fps: float = 5.0, width: int = 640,
              height: int = 360, blobs: int = 0, blob_size: float = 0.12, noise: float = 3.0,
              light_ramp: tuple[float, float] | None = None, ir_switch_at: float | None = None,
              seed: int = 7) -> Clip:
    """A clip of the still scene with `blobs` moving objects and the given light changes.

    `light_ramp=(start_gain, end_gain)` scales brightness linearly over the clip (dusk is
    about (1.0, 0.3)); `ir_switch_at` (seconds) applies a sudden contrast and gamma change.
    """
    rng = np.random.default_rng(seed)
    base = scene(width, height, seed=1)
    n = int(seconds * fps)
    size = int(blob_size * height)
    pos = [np.array([rng.uniform(0, width - size), rng.uniform(0, height - size)])
           for _ in range(blobs)]
    vel = [rng.uniform(-1, 1, 2) * np.array([width, height]) * 0.06 for _ in range(blobs)]
    shades = [float(rng.choice([20.0, 235.0])) for _ in range(blobs)]
    clip = Clip()
    for i in range(n):
        img = base.copy()
        boxes: list[Box] = []
        for b in range(blobs):
            pos[b] = pos[b] + vel[b]
            for k, limit in ((0, width - size), (1, height - size)):
                if not 0 <= pos[b][k] <= limit:
                    vel[b][k] = -vel[b][k]
                    pos[b][k] = min(max(pos[b][k], 0), limit)
            x, y = int(pos[b][0]), int(pos[b][1])
            cv2.ellipse(img, (x + size // 2, y + size // 2), (size // 2, int(size * 0.45)),
                        0, 0, 360, shades[b], -1)
            boxes.append((x / width, y / height, (x + size) / width, (y + size) / height))
        if light_ramp is not None:
            gain = light_ramp[0] + (light_ramp[1] - light_ramp[0]) * i / max(n - 1, 1)
            img = img * gain
        if ir_switch_at is not None and i / fps >= ir_switch_at:
            img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** 0.6 * 0.8 + 30
        img = img + rng.normal(0, noise, img.shape) if noise else img
        clip.frames.append(np.clip(img, 0, 255).astype(np.uint8))
        clip.truth.append(boxes)
    return clip


def to_i420(grey: np.ndarray) -> np.ndarray:
    """A grey frame as an I420 buffer (neutral chroma), as the frame reader delivers."""
    h, w = grey.shape
    out = np.full((h * 3 // 2, w), 128, np.uint8)
    out[:h] = grey
    return out


def encode(frames: list[np.ndarray], out: Path, fps: float = 5.0) -> Path:
    """Write grey frames as an H.264 file (keyframe every second) with ffmpeg."""
    h, w = frames[0].shape
    args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo",
            "-pix_fmt", "gray", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "pipe:0",
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "23", "-g", str(int(fps)),
            "-pix_fmt", "yuv420p", str(out)]
    subprocess.run(args, input=b"".join(f.tobytes() for f in frames), check=True)
    return out
