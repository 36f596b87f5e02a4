"""`[web]` config."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class WebSettings(BaseModel):
    """The node's web page (docs/web.md)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=False, description="Serve the web page (needs the `web` "
                                                      "extra: starlette, uvicorn, argon2-cffi).")
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8443, ge=1, le=65535)
    tls: Literal["self-signed", "files", "off"] = Field(
        default="self-signed",
        description="HTTPS: 'self-signed' makes a certificate for this node at first start "
                    "(in data_dir); 'files' uses tls_cert/tls_key; 'off' serves plain HTTP "
                    "(session cookies then lose their Secure flag: see docs/web.md).")
    tls_cert: Path | None = None
    tls_key: Path | None = Field(default=None, json_schema_extra={"secret": True})
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    max_viewers: int = Field(default=4, ge=0, le=32,
                             description="Simultaneous live-view streams, all cameras together.")
    event_log_max: int = Field(default=5000, ge=100, le=200_000,
                               description="Events kept in the page's local event log.")
    max_export_s: float = Field(default=6 * 3600, gt=0,
                                description="Longest range one download may cover.")

    @model_validator(mode="after")
    def _files_need_paths(self) -> WebSettings:
        if self.tls == "files" and (self.tls_cert is None or self.tls_key is None):
            raise ValueError("tls = 'files' needs tls_cert and tls_key")
        return self
