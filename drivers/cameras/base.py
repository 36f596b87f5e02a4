"""The one camera interface the rest of the node sees.

A camera gives two `StreamInput`s: `main`, a recordable H.264/H.265 stream (stream-copied
by the recorder), and `detect`, a decodable stream for detection (a substream where the
camera has one, else the main stream). Whatever the camera is (RTSP, USB, CSI), the
consumers only hand these to ffmpeg.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]+)(:[^@/\s]*)?@",
                          re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """Hide the password (and user) of any URL in `text`: rtsp://***:***@host/..."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}***:***@", text)


@dataclass(frozen=True)
class StreamInput:
    """What ffmpeg needs to read one stream: a URL (or path) and its input options.

    `options` are ffmpeg-python input keyword arguments, e.g.
    ``{"rtsp_transport": "tcp", "timeout": 10_000_000}``.
    """

    url: str
    options: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return mask_credentials(self.url)
