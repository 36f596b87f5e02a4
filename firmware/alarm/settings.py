"""`[alarm]` config."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AlarmSettings(BaseModel):
    """How the panic button and the siren behave."""

    model_config = ConfigDict(extra="forbid")

    panic_policy: Literal["instant", "hold"] = "instant"
    hold_s: float = Field(default=1.5, gt=0, le=10)
    siren_max_s: float = Field(default=180.0, gt=0, le=1800,
                               description="The siren stops after this, acknowledged or not.")
    light_max_s: float = Field(default=900.0, gt=0, le=7200)
    pre_s: float = Field(default=30.0, ge=0, le=600)
    post_s: float = Field(default=120.0, ge=0, le=1800)
