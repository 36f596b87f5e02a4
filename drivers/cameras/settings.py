"""`[[cameras]]` config: one table per camera."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CAMERA_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class CameraSettings(BaseModel):
    """One camera. `kind` decides which of `url` / `device` is needed."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=CAMERA_NAME, max_length=32,
                      description="Short name, one MQTT topic level, e.g. 'gang-utara'.")
    kind: Literal["rtsp", "usb", "picamera", "jetson"] = "rtsp"
    enabled: bool = True
    url: str | None = Field(default=None, description="rtsp:// or http(s):// main stream URL.")
    substream_url: str | None = Field(default=None,
                                      description="Low-resolution stream used for detection.")
    username: str | None = None
    password_file: Path | None = Field(default=None, json_schema_extra={"secret": True},
                                       description="File holding the camera password.")
    device: str | None = Field(default=None, description="V4L2 device for usb, e.g. /dev/video0.")
    sensor: int = Field(default=0, ge=0, description="CSI sensor index (picamera, jetson).")
    width: int = Field(default=1280, ge=160, le=7680)
    height: int = Field(default=720, ge=120, le=4320)
    fps: int = Field(default=15, ge=1, le=60)
    transport: Literal["tcp", "udp"] = Field(
        default="tcp", description="RTSP transport; tcp survives lossy Wi-Fi bridges.")
    timeout_s: float = Field(default=10.0, gt=0, le=120,
                             description="Socket timeout: a camera silent this long is offline.")
    backoff_cap_s: float = Field(default=30.0, ge=1, le=3600,
                                 description="Longest wait between reconnect attempts.")
    audio: bool = Field(default=True,
                        description="Record the camera's audio track (G.711 or AAC, stored "
                                    "as AAC) when it sends one; false records video only.")
    input_format: Literal["h264", "mjpeg", "yuyv422", "nv12"] | None = Field(
        default=None, description="usb: format to ask the camera for; unset = the best it "
                                  "offers (H.264 > MJPEG > raw). `ronda cameras list` shows them.")
    detect_width: int = Field(default=640, ge=64, le=1920,
                              description="usb/picamera/jetson: width of the raw detect frames.")
    detect_height: int = Field(default=360, ge=64, le=1080,
                               description="usb/picamera/jetson: height of the detect frames.")
    detect_fps: int = Field(default=5, ge=1, le=30,
                            description="usb/picamera/jetson: detect frames per second.")
    bitrate_kbps: int = Field(default=3000, ge=200, le=50000,
                              description="usb (when encoding)/picamera/jetson: H.264 bitrate.")

    @model_validator(mode="after")
    def _source_present(self) -> CameraSettings:
        if self.kind == "rtsp" and not self.url:
            raise ValueError("an rtsp camera needs `url` (rtsp://host/path)")
        if self.kind == "usb" and not self.device:
            raise ValueError("a usb camera needs `device` (e.g. /dev/video0)")
        if self.url and not self.url.startswith(("rtsp://", "rtsps://", "http://", "https://")):
            raise ValueError(f"url must start with rtsp://, rtsps://, http:// or https://, "
                             f"got {self.url.split(':', 1)[0]}://")
        return self
