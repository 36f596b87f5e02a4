"""Network cameras (RTSP, HTTP): the camera serves its streams; ffmpeg reads them.

RTSP goes over TCP by default (`transport = "tcp"`): a watch post's Wi-Fi bridge or
cheap switch drops UDP packets, and a lost RTP packet is a smeared picture, while TCP
only adds delay. The socket `timeout` (microseconds, ffmpeg >= 5) makes ffmpeg give up
on a camera that accepts the connection and then says nothing, instead of hanging;
reconnecting is then the supervisor's job (`ManagedProcess`), not ffmpeg's.
"""

from __future__ import annotations

import socket
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from drivers.cameras.base import Camera, StreamInput

DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """`url` with `username:password@` inserted (percent-encoded), unless it has some: the
    one place credentials go into a camera URL (the daemon, `ronda doctor`). An empty
    password is no password.

    >>> with_credentials("rtsp://cam:554/live", "admin", "p@ss:w/rd")
    'rtsp://admin:p%40ss%3Aw%2Frd@cam:554/live'
    >>> with_credentials("rtsp://cam/live", "admin", "")
    'rtsp://admin@cam/live'
    >>> with_credentials("rtsp://u:p@cam/live", "admin", "x")
    'rtsp://u:p@cam/live'
    """
    if not username:
        return url
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return url
    auth = quote(username, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc}"))


def input_options(url: str, transport: str = "tcp", timeout_s: float = 10.0) -> dict[str, Any]:
    """ffmpeg input options for a network URL: transport and socket timeout (µs)."""
    scheme = url.split("://", 1)[0].lower()
    timeout_us = int(timeout_s * 1_000_000)
    if scheme in ("rtsp", "rtsps"):
        return {"rtsp_transport": transport, "timeout": timeout_us}
    return {"timeout": timeout_us}  # http(s): socket I/O timeout, also in µs


class RtspCamera(Camera):
    """An IP camera: `url` is the main stream, `substream_url` (if any) feeds detection."""

    kind = "rtsp"

    def __init__(self, name: str, url: str, *, substream_url: str | None = None,
                 username: str | None = None, password: str | None = None,
                 transport: str = "tcp", timeout_s: float = 10.0) -> None:
        main_url = with_credentials(url, username, password)
        main = StreamInput(main_url, input_options(main_url, transport, timeout_s))
        detect = None
        if substream_url:
            sub_url = with_credentials(substream_url, username, password)
            detect = StreamInput(sub_url, input_options(sub_url, transport, timeout_s))
        super().__init__(name, main, detect)
        if url.startswith("http"):
            self.kind = "http"
        self.timeout_s = timeout_s
        parts = urlsplit(main_url)
        self.host = parts.hostname or ""
        self.port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 554)

    def reachable(self, timeout: float = 0.5) -> bool:
        """Whether the camera accepts a TCP connection now (no RTSP spoken)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout):
                return True
        except OSError:
            return False
