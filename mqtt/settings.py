"""`[mqtt]` config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


@dataclass(frozen=True)
class Broker:
    """One parsed broker URL."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Broker:
        """`mqtt://host[:1883]` or `mqtts://host[:8883]` (TLS); `tcp://` and `ssl://`
        are accepted as their aliases (paho's and Mosquitto's spelling)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts:// "
                             "(or their aliases tcp://, ssl://)")
        tls = parts.scheme in ("mqtts", "ssl")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        return cls(url, parts.hostname, parts.port or (8883 if tls else 1883), tls)


class MqttSettings(BaseModel):
    """Broker connection, topics, durable outbox and command security."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    brokers: list[str] = Field(default_factory=lambda: ["mqtt://127.0.0.1:1883"], min_length=1,
                               description="Broker URLs tried in order: mqtt://, mqtts://.")
    prefix: str = Field(default="ronda/v1", pattern=r"^[^#+\s]+$")
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT version to try first; 5 falls back to 3.1.1 when the "
                                 "broker refuses it.")
    username: str | None = None
    password_file: Path | None = Field(default=None, json_schema_extra={"secret": True})
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = Field(default=None, json_schema_extra={"secret": True})
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    health_interval_s: float = Field(default=60.0, ge=1, le=3600)
    command_keys: list[str] = Field(default_factory=list,
                                    description="Base64 Ed25519 public keys allowed to command.")
    # -- added by the MQTT area (issue 5) ------------------------------------------------
    reconnect_min_s: float = Field(default=1.0, gt=0, le=60,
                                   description="Reconnect delay ceiling after the first "
                                               "failure (delays are drawn from 0 to the "
                                               "ceiling); doubles per failure.")
    reconnect_max_s: float = Field(default=60.0, gt=0, le=3600,
                                   description="Cap of the reconnect delay ceiling.")
    outbox_max_events: int = Field(default=20000, ge=10, le=10_000_000,
                                   description="Events kept while the broker is unreachable; "
                                               "beyond it the oldest low-priority go first.")
    outbox_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024,
                                  description="Bytes (JSON + event snapshots) kept in the outbox.")
    max_inflight: int = Field(default=64, ge=1, le=1000,
                              description="QoS 1 events sent and not yet acknowledged.")
    command_window_s: float = Field(default=120.0, ge=5, le=3600,
                                    description="A command's `ts` must be within this many "
                                                "seconds of the node's clock.")
    command_max_bytes: int = Field(default=4096, ge=256, le=65536,
                                   description="Larger command payloads are refused unread.")
    command_timeout_s: float = Field(default=5.0, gt=0, le=60,
                                     description="No handler reply within this: error reply.")
    homeassistant: bool = Field(default=False,
                                description="Publish Home Assistant discovery (read-only).")
    homeassistant_prefix: str = Field(default="homeassistant", pattern=r"^[^#+\s]+$")

    @field_validator("prefix", "homeassistant_prefix")
    @classmethod
    def _topic_prefix(cls, prefix: str) -> str:
        if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
            raise ValueError("a topic prefix has no leading, trailing or double '/', "
                             "e.g. 'ronda/v1'")
        return prefix

    @field_validator("brokers")
    @classmethod
    def _broker_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            Broker.parse(url)  # ValueError names the bad URL
        return urls

    @field_validator("command_keys")
    @classmethod
    def _public_keys(cls, keys: list[str]) -> list[str]:
        from mqtt.signing import load_public_key

        for i, text in enumerate(keys):
            try:
                load_public_key(text)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"command_keys[{i}] is not an Ed25519 public key ({exc}); "
                                 "`ronda keys generate` prints one") from None
        return keys

    @model_validator(mode="after")
    def _backoff_order(self) -> MqttSettings:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self
