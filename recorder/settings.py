"""`[recorder]` config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ByteSize, ConfigDict, Field


class RecorderSettings(BaseModel):
    """Where and how much to record."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    path: Path = Field(default=Path("/srv/ronda/recordings"),
                       description="Recordings directory on the SSD; the index "
                                   "(index.sqlite3) lives in it too.")
    segment_s: float = Field(default=10.0, ge=1, le=300)
    quota: ByteSize = Field(default=ByteSize(32 * 1024**3),
                            description="Byte quota for the whole store, e.g. '200 GiB'.")
    camera_quota: dict[str, ByteSize] = Field(
        default_factory=dict,
        description="Optional per-camera byte quotas within `quota`, e.g. {gang-utara = '50 GiB'}.")
    max_age_days: float | None = Field(default=None, gt=0)
    camera_segment_s: dict[str, Annotated[float, Field(ge=1, le=300)]] = Field(
        default_factory=dict,
        description="Per-camera segment length overriding `segment_s`, e.g. {pos = 4}.")
    camera_max_age_days: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Per-camera age limit overriding `max_age_days` (a camera facing a "
                    "public road may have to keep less), e.g. {gang-utara = 7}.")
    event_share: float = Field(default=0.3, ge=0, le=1,
                               description="Share of the quota that protected clips may use.")
    pre_s: float = Field(default=10.0, ge=0, le=600,
                         description="Unused: clip senders ([alarm], [detect]) add their own "
                                     "pre-roll; kept so existing files stay valid.")
    post_s: float = Field(default=20.0, ge=0, le=600,
                          description="Unused: clip senders add their own post-roll.")
    min_free: ByteSize = Field(default=ByteSize(512 * 1024**2),
                               description="Free space the filesystem must keep.")
    keep_recent_h: float = Field(
        default=6.0, ge=0, le=24 * 366,
        description="Hours of each camera's newest footage that the free-space floor never "
                    "deletes: when something else fills the disk, recording stops instead.")
    require_mount: bool = Field(
        default=False,
        description="Record only when `path` is on another filesystem than / (the SSD is "
                    "mounted); otherwise report storage 'missing' instead of filling the SD card.")
