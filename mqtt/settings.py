"""`[mqtt]` config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class MqttSettings(BaseModel):
    """Broker connection and topics."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    brokers: list[str] = Field(default_factory=lambda: ["mqtt://127.0.0.1:1883"], min_length=1,
                               description="Broker URLs tried in order: mqtt://, mqtts://.")
    prefix: str = Field(default="ronda/v1", pattern=r"^[^#+\s]+$")
    protocol: Literal["5", "3.1.1"] = "5"
    username: str | None = None
    password_file: Path | None = Field(default=None, json_schema_extra={"secret": True})
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = Field(default=None, json_schema_extra={"secret": True})
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    health_interval_s: float = Field(default=60.0, ge=1, le=3600)
    command_keys: list[str] = Field(default_factory=list,
                                    description="Base64 Ed25519 public keys allowed to command.")
