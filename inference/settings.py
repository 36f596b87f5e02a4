"""`[detect]` config: detection, motion gating, zones, masks and tamper.

Example::

    [detect]
    enabled = true
    model = "/usr/share/ronda/models/pose_detection.tflite"
    min_score = 0.6

    [[detect.zones]]
    camera = "gang-utara"
    name = "gate"
    points = [[0.1, 0.5], [0.6, 0.5], [0.6, 1.0], [0.1, 1.0]]

    [[detect.masks]]          # a tree that waves in the wind
    camera = "gang-utara"
    points = [[0.8, 0.0], [1.0, 0.0], [1.0, 0.4], [0.8, 0.4]]

    [detect.cameras.pos]      # this camera's own thresholds and labels
    min_score = 0.7
    objects = ["person", "motorcycle"]

`DetectSettings.for_camera(name)` gives the settings one camera's pipeline runs with:
``[detect]``, then that camera's ``[detect.cameras.<name>]`` over it, with only its own
zones and masks. `DetectSettings.problems(cameras)` names what the rest of the file
contradicts (a zone, mask or override of an unknown camera; detection with no model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from inference import detectors

Point = tuple[float, float]


def _polygon(points: list[Point]) -> list[Point]:
    if len(points) < 3:
        raise ValueError("a polygon needs at least 3 points")
    for x, y in points:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ValueError("points are fractions of the picture: x and y in 0..1")
    return points


class ZoneSettings(BaseModel):
    """A named area of one camera's picture; a track enters it with its feet (box bottom)."""

    model_config = ConfigDict(extra="forbid")

    camera: str
    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=32)
    points: list[Point] = Field(description="Polygon corners [[x, y], ...], x and y in 0..1.")
    objects: list[str] = Field(default_factory=list,
                               description="Labels this zone alerts for (empty: all).")

    _check = field_validator("points")(_polygon)


class MaskSettings(BaseModel):
    """An area of one camera to ignore: no motion there, no objects standing there."""

    model_config = ConfigDict(extra="forbid")

    camera: str
    points: list[Point]

    _check = field_validator("points")(_polygon)


class MotionSettings(BaseModel):
    """`[detect.motion]`: the cheap detector that decides where the model looks."""

    model_config = ConfigDict(extra="forbid")

    width: int = Field(default=160, ge=32, le=640, description="Analysis width in pixels.")
    threshold: int = Field(default=20, ge=1, le=255,
                           description="Grey-level change (0..255) that counts as moving.")
    min_area: float = Field(default=0.0015, gt=0, lt=1,
                            description="Smallest moving area, fraction of the picture.")
    alpha: float = Field(default=0.05, gt=0, le=1,
                         description="Background learning rate per frame.")
    global_change: float = Field(default=0.6, gt=0, le=1,
                                 description="Above this changed fraction the scene is "
                                             "re-learnt (IR switch, headlights), no motion.")


class TamperSettings(BaseModel):
    """`[detect.tamper]`: covered, out-of-focus and moved cameras."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    persist_s: float = Field(default=10.0, ge=0, le=600,
                             description="How long a condition must last (and be gone) "
                                         "before a tamper event starts (ends).")
    check_fps: float = Field(default=1.0, gt=0, le=30,
                             description="Tamper checks per second (persist_s is long).")
    covered_contrast: float = Field(default=6.0, ge=0, le=64,
                                    description="Grey-level std below which the view is "
                                                "covered (black, taped, sprayed).")
    blur_ratio: float = Field(default=0.3, gt=0, lt=1,
                              description="Sharpness below this fraction of the learnt "
                                          "sharpness means out of focus.")
    moved_match: float = Field(default=0.6, gt=-1, lt=1,
                               description="Correlation with the reference view below which "
                                           "the camera has moved.")
    learn_s: float = Field(default=5.0, ge=0, le=600,
                           description="Time to learn the reference view after start.")


class DetectSettings(BaseModel):
    """Object detection, gated by motion."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    type: str = Field(default="tflite",
                      description="Detector back-end: a module of inference/detectors/ "
                                  "(tflite).")
    fps: float = Field(default=5.0, gt=0, le=30)
    width: int = Field(default=640, ge=64, le=3840)
    height: int = Field(default=360, ge=64, le=2160)
    hwaccel: Literal["auto", "none", "v4l2m2m", "jetson", "vaapi", "cuda"] = Field(
        default="auto", description="Hardware decoding of the detect stream (auto: by board).")
    model: Path | None = Field(default=None, description="Path to a .tflite detector.")
    labels: Path | None = None
    model_type: Literal["auto", "ssd", "mediapipe"] = Field(
        default="auto", description="Output layout: 4-tensor SSD post-process or MediaPipe "
                                    "anchors (auto: by the number of outputs).")
    delegate: Literal["cpu", "edgetpu"] = "cpu"
    delegate_device: str | None = Field(default=None, description="EdgeTPU device, e.g. usb:0.")
    num_threads: int = Field(default=1, ge=1, le=16,
                             description="Interpreter threads. 1 suits a node whose cores are "
                                         "shared with ffmpeg decoders: XNNPACK threads spin "
                                         "while they wait (2 threads cost up to 6x the CPU "
                                         "under load; idle, they halve the latency).")
    min_score: float = Field(default=0.6, gt=0, lt=1,
                             description="Best score a track needs to alert.")
    min_area: float = Field(default=0.005, ge=0, lt=1,
                            description="Smallest object box that alerts, fraction of picture.")
    objects: list[str] = Field(default_factory=lambda: ["person"])
    recheck_s: float = Field(default=1.0, gt=0, le=60,
                             description="Tracked objects with no motion are re-checked "
                                         "this often.")
    lost_after_s: float = Field(default=3.0, gt=0, le=600,
                                description="A track ends when unseen this long.")
    update_interval_s: float = Field(default=5.0, gt=0, le=600,
                                     description="At most one update event per track this often.")
    max_crops: int = Field(default=4, ge=1, le=16,
                           description="Detector runs per frame at most (else whole frame).")
    pre_s: float = Field(default=10.0, ge=0, le=600, description="Footage kept before a track.")
    post_s: float = Field(default=30.0, ge=0, le=1800, description="Footage kept after a track.")
    zones: list[ZoneSettings] = Field(default_factory=list)
    masks: list[MaskSettings] = Field(default_factory=list)
    motion: MotionSettings = Field(default_factory=MotionSettings)
    tamper: TamperSettings = Field(default_factory=TamperSettings)
    cameras: dict[str, CameraDetectSettings] = Field(
        default_factory=dict, description="Per-camera overrides, [detect.cameras.<name>].")

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in detectors.types():
            raise ValueError(f"unknown detector type (known: {', '.join(detectors.types())})")
        return value

    @field_validator("width", "height")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("must be even (frames are decoded as YUV 4:2:0)")
        return value

    def for_camera(self, camera: str) -> DetectSettings:
        """The settings of `camera`'s pipeline: its overrides applied, its zones and masks
        only (those of ``[[detect.zones]]`` naming it, then its own)."""
        own = self.cameras.get(camera)
        update: dict = {"cameras": {}}
        zones = [z for z in self.zones if z.camera == camera]
        masks = [m for m in self.masks if m.camera == camera]
        if own is not None:
            update |= {name: getattr(own, name) for name in own.model_fields_set
                       if name not in ("zones", "masks")}
            zones += [ZoneSettings(camera=camera, **z.model_dump()) for z in own.zones]
            masks += [MaskSettings(camera=camera, **m.model_dump()) for m in own.masks]
        return self.model_copy(update={**update, "zones": zones, "masks": masks})

    def problems(self, cameras: set[str]) -> list[tuple[str, str, object]]:
        """(field path under ``detect``, message, value) of each contradiction with the
        rest of the config: zones, masks and overrides naming a camera not in `cameras`,
        and detection enabled with no model."""
        known = ", ".join(sorted(cameras)) or "none"
        found: list[tuple[str, str, object]] = []
        for kind, items in (("zones", self.zones), ("masks", self.masks)):
            for i, item in enumerate(items):
                if item.camera not in cameras:
                    found.append((f"{kind}[{i}].camera",
                                  f"no camera of that name in [[cameras]] (cameras: {known})",
                                  item.camera))
        for name in self.cameras:
            if name not in cameras:
                found.append((f"cameras.{name}",
                              f"no camera of that name in [[cameras]] (cameras: {known})", name))
        if self.enabled and self.model is None:
            found.append(("model", "detection is enabled but no model is set (a .tflite "
                                   "file; or enabled = false)", None))
        return found


class CameraZoneSettings(BaseModel):
    """A zone of the camera whose ``[detect.cameras.<name>]`` lists it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=32)
    points: list[Point] = Field(description="Polygon corners [[x, y], ...], x and y in 0..1.")
    objects: list[str] = Field(default_factory=list,
                               description="Labels this zone alerts for (empty: all).")

    _check = field_validator("points")(_polygon)


class CameraMaskSettings(BaseModel):
    """A mask of the camera whose ``[detect.cameras.<name>]`` lists it."""

    model_config = ConfigDict(extra="forbid")

    points: list[Point]

    _check = field_validator("points")(_polygon)


class CameraDetectSettings(BaseModel):
    """``[detect.cameras.<name>]``: what differs for one camera; unset fields come from
    ``[detect]``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="false: no detection on this camera.")
    min_score: float | None = Field(default=None, gt=0, lt=1)
    min_area: float | None = Field(default=None, ge=0, lt=1)
    objects: list[str] | None = None
    recheck_s: float | None = Field(default=None, gt=0, le=60)
    lost_after_s: float | None = Field(default=None, gt=0, le=600)
    update_interval_s: float | None = Field(default=None, gt=0, le=600)
    max_crops: int | None = Field(default=None, ge=1, le=16)
    pre_s: float | None = Field(default=None, ge=0, le=600)
    post_s: float | None = Field(default=None, ge=0, le=1800)
    motion: MotionSettings | None = None
    tamper: TamperSettings | None = None
    zones: list[CameraZoneSettings] = Field(default_factory=list)
    masks: list[CameraMaskSettings] = Field(default_factory=list)


DetectSettings.model_rebuild()
