"""`[detect]` config."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class DetectSettings(BaseModel):
    """Object detection, gated by motion."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    fps: float = Field(default=5.0, gt=0, le=30)
    width: int = Field(default=640, ge=64, le=3840)
    height: int = Field(default=360, ge=64, le=2160)
    model: Path | None = Field(default=None, description="Path to a .tflite detector.")
    labels: Path | None = None
    num_threads: int = Field(default=2, ge=1, le=16)
    min_score: float = Field(default=0.6, gt=0, lt=1)
    objects: list[str] = Field(default_factory=lambda: ["person"])
