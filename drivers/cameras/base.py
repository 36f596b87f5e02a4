"""The one camera interface the rest of the node sees.

A camera gives two `StreamInput`s: `main`, a recordable H.264/H.265 stream (stream-copied
by the recorder), and `detect`, a decodable stream for detection (a substream where the
camera has one, else the main stream). Whatever the camera is (RTSP, USB, CSI), the
consumers only hand these to ffmpeg.

Cameras that need a producer process of their own (USB, Pi CSI, Jetson CSI) start it in
`start()` and stop it in `stop()`; network cameras need neither.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# user[:password]@ up to the *last* @ before the host: a raw "@" in a password is masked too
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<auth>[^/\s]*)@", re.IGNORECASE)

#: Codecs the recorder can stream-copy into segments.
RECORDABLE_CODECS = ("h264", "hevc")


def mask_credentials(text: str) -> str:
    """Hide the password (and user) of any URL in `text`: rtsp://***:***@host/..."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}***:***@", text)


@dataclass(frozen=True)
class StreamInput:
    """What ffmpeg needs to read one stream: a URL (or path) and its input options.

    `options` are ffmpeg-python input keyword arguments, e.g.
    ``{"rtsp_transport": "tcp", "timeout": 10_000_000}``.

    `str()` and `repr()` mask credentials (repr too: it is what a log line, a traceback or
    the repr of a list or an object holding a stream shows).
    """

    url: str = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return mask_credentials(self.url)

    def __repr__(self) -> str:
        options = {k: mask_credentials(v) if isinstance(v, str) else v
                   for k, v in self.options.items()}
        return f"StreamInput(url={mask_credentials(self.url)!r}, options={options!r})"

    def ffmpeg_args(self) -> list[str]:
        """The input as ffmpeg command-line arguments, ending with ``-i URL``: the one
        translation of `options` into ffmpeg's, for every consumer. A value of None or True
        is a bare flag (``{"re": None}`` -> ``-re``), False leaves the option out.

        >>> StreamInput("rtsp://cam/1", {"rtsp_transport": "tcp", "re": None}).ffmpeg_args()
        ['-rtsp_transport', 'tcp', '-re', '-i', 'rtsp://cam/1']
        """
        return [*self.option_args(), "-i", self.url]

    def option_args(self) -> list[str]:
        """`options` as ffmpeg arguments, for a command that places ``-i`` itself."""
        args: list[str] = []
        for key, value in self.options.items():
            if value is False:
                continue
            args.append(f"-{key}")
            if value is not None and value is not True:
                args.append(str(value))
        return args


StateCallback = Callable[[str, str], None]  # (state, reason)


class Camera:
    """A configured camera: a name, a kind, and its `main` and `detect` streams.

    Subclasses fill in `main` and `detect`; producer cameras also override `start`,
    `stop` and `health`, and call `on_source_state(state, reason)` as their producer
    goes online or offline (the registry turns it into camera state).
    """

    kind: str = "camera"

    def __init__(self, name: str, main: StreamInput, detect: StreamInput | None = None) -> None:
        self.name = name
        self.main = main
        self.detect = detect or main
        self.on_source_state: StateCallback = lambda state, reason: None

    @property
    def needs_producer(self) -> bool:
        """Whether `start()` runs a process that the streams depend on."""
        return False

    def start(self) -> None:
        """Start whatever produces the streams (nothing for network cameras)."""

    def stop(self) -> None:
        """Stop what `start` started."""

    def reachable(self) -> bool | None:
        """A cheap check that the source answers now (TCP connect); None if unknown."""
        return None

    def health(self) -> dict[str, Any]:
        """Driver figures added to the camera's health entry."""
        return {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} main={self.main} detect={self.detect}>"
