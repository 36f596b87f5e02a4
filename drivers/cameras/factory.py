"""Build the right `Camera` for one `[[cameras]]` table."""

from __future__ import annotations

from drivers.cameras.base import Camera
from drivers.cameras.rtsp import RtspCamera
from drivers.cameras.settings import CameraSettings


def make_camera(settings: CameraSettings, password: str | None = None) -> Camera:
    """A camera object for `settings`; `password` is the content of `password_file`."""
    if settings.kind == "rtsp":
        assert settings.url is not None
        return RtspCamera(settings.name, settings.url, substream_url=settings.substream_url,
                          username=settings.username, password=password,
                          transport=settings.transport, timeout_s=settings.timeout_s)
    if settings.kind == "usb":
        from drivers.cameras.usb import UsbCamera

        return UsbCamera.from_settings(settings)
    if settings.kind == "picamera":
        from drivers.cameras.picamera import PiCamera

        return PiCamera.from_settings(settings)
    if settings.kind == "jetson":
        from drivers.cameras.jetson import JetsonCamera

        return JetsonCamera.from_settings(settings)
    raise ValueError(f"unknown camera kind {settings.kind!r}")
