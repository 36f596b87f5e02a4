"""The uplink's commands: `live`, `live-stop`, `fetch`, answered with (ok, message, data).

`Uplink` holds the live pushes and the fetch queue and turns a verified command's
arguments into one of them. Cameras reach it as callbacks (`CameraAccess`), so the
package does not know the registry; the wiring adapts it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.cameras.base import mask_credentials
from uplink.bandwidth import Bandwidth
from uplink.fetch import Fetcher
from uplink.live import LiveManager, Source
from uplink.settings import MAX_TTL_S, UplinkSettings

log = logging.getLogger(__name__)

ACTIONS = ("live", "live-stop", "fetch")
Result = tuple[bool, str, dict[str, Any]]


@dataclass
class CameraAccess:
    """What the uplink needs of the cameras."""

    names: Callable[[], list[str]]
    source: Callable[[str, str], Source]  # (camera, "main"|"sub") -> what ffmpeg reads
    state: Callable[[str], tuple[str, str]]  # camera -> (online|offline|degraded|..., reason)


class Uplink:
    """Live pushes and footage uploads of one node."""

    def __init__(self, settings: UplinkSettings, node: str, cameras: CameraAccess,
                 bandwidth: Bandwidth, live: LiveManager, fetcher: Fetcher | None,
                 secret: str | None = None) -> None:
        self.settings = settings
        self.node = node
        self.cameras = cameras
        self.bandwidth = bandwidth
        self.live = live
        self.fetcher = fetcher
        self.secret = secret or ""

    def handle(self, cmd_id: str, action: str, args: dict[str, Any]) -> Result:
        """Act on one verified command."""
        if action == "live":
            return self.start_live(args)
        if action == "live-stop":
            camera = str(args.get("camera", ""))
            if self.live.stop(camera, "live-stop"):
                return True, f"{camera}: live stopped", {"camera": camera}
            return True, f"{camera} was not live", {"camera": camera}
        if action == "fetch":
            if self.fetcher is None:
                return False, "no recordings on this node ([recorder] is off)", {}
            return self.fetcher.submit(cmd_id, args)
        return False, f"unknown uplink action {action!r}", {}

    def start_live(self, args: dict[str, Any]) -> Result:
        camera = args.get("camera")
        stream = args.get("stream", "main")
        ttl_s = args.get("ttl_s", 120)
        if not isinstance(ttl_s, (int, float)) or isinstance(ttl_s, bool) \
                or not 0 < ttl_s <= MAX_TTL_S:
            return False, f"ttl_s must be in (0, {MAX_TTL_S}] s; send `live` again to renew", {}
        if stream not in ("main", "sub"):
            return False, "stream must be 'main' or 'sub'", {}
        names = self.cameras.names()
        if not isinstance(camera, str) or camera not in names:
            return False, f"unknown camera {camera!r} (cameras: {', '.join(names)})", {}
        template = self.settings.media_url
        if not template:
            return False, "no media server configured ([uplink] media_url)", {}
        state, reason = self.cameras.state(camera)
        if state == "offline":
            return False, f"camera {camera} is offline" + (f": {reason}" if reason else ""), {}
        source = self.cameras.source(camera, stream)
        scheme = template.split("://", 1)[0].lower()
        if source.codec == "hevc" and scheme in ("rtmp", "rtmps"):
            return False, (f"camera {camera} sends H.265, which RTMP (FLV) cannot carry; "
                           "use an rtsp:// or srt:// media_url"), {}
        dest, where = self._destination(camera, stream)
        return self.live.start(camera, stream, float(ttl_s), source, dest, where, self._redact)

    def add_wall(self, camera: str, budget_bytes: int) -> str:
        """Put `camera`'s substream on the always-on video wall; '' or why it cannot be."""
        if camera not in self.cameras.names():
            return "no such (enabled) camera"
        if not self.settings.media_url:
            return "no media server configured ([uplink] media_url)"
        dest, where = self._destination(camera, "sub")
        self.live.add_wall(camera, self.cameras.source(camera, "sub"), dest, where,
                           self._redact, budget_bytes)
        return ""

    def _destination(self, camera: str, stream: str) -> tuple[str, str]:
        """The media URL for a push, and the same without its secret (for reports)."""
        template = self.settings.media_url or ""
        fields = {"node": self.node, "camera": camera, "stream": stream}
        dest = template.format(**fields, secret=self.secret)
        return dest, mask_credentials(template.format(**fields, secret="***"))

    def _redact(self, text: str) -> str:
        return mask_credentials(text.replace(self.secret, "***") if self.secret else text)
