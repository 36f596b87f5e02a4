"""Turn ffmpeg/ffprobe error output into a reason a technician can act on.

ffmpeg says "Server returned 401 Unauthorized (authorization failed)"; the health report
should say "wrong username or password (401)". `explain` maps the known messages and
otherwise returns the last line as it is (credentials masked).
"""

from __future__ import annotations

import re

from drivers.cameras.base import mask_credentials

_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), reason) for pattern, reason in (
        (r"401 Unauthorized|authorization failed", "wrong username or password (401)"),
        (r"403 Forbidden", "access forbidden by the camera (403)"),
        (r"404 Not Found|Stream not found", "stream path not found on the camera (404)"),
        (r"Connection refused", "connection refused: camera down or wrong port"),
        (r"Connection timed out|timed out|Operation timed out",
         "no answer from the camera (timed out)"),
        (r"No route to host|Network is unreachable", "camera unreachable (no route)"),
        (r"Name or service not known|Failed to resolve|nodename nor servname",
         "unknown camera host name"),
        (r"Connection reset by peer|End of file|Broken pipe", "the camera closed the connection"),
        (r"Invalid data found", "not a video stream (invalid data)"),
        (r"No such file or directory", "device or file not found"),
        (r"Device or resource busy", "device busy (used by another program?)"),
        (r"Protocol not found", "unsupported URL scheme"),
    ))


def explain(text: str) -> str:
    """The best known reason found in `text` (ffmpeg stderr lines), else its last line."""
    text = mask_credentials(text or "")
    for pattern, reason in _RULES:
        if pattern.search(text):
            return reason
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else ""
