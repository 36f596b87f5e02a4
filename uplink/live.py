"""Live push: a camera's stream copied (never re-encoded) to the city's media server.

One `LivePush` is one ffmpeg (`-c copy`) under `drivers.managed.ManagedProcess`, so a
media server that goes away is retried with backoff until the push's time is up. Its
`-progress` output gives the bytes sent and the bitrate; the first progress report with
a frame marks the push `live` (`since`).

`LiveManager` keeps the pushes by camera: `start` (a second `live` for the same camera
renews the ttl), `stop`, and `tick()` (called about twice a second) ends pushes whose
ttl ran out and refreshes the measured bitrate in the shared `Bandwidth`. Every change of
a push calls `on_state(camera, doc)`; the wiring publishes the doc retained on
`live/<camera>`.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from drivers.managed import ManagedProcess
from uplink.bandwidth import Bandwidth
from uplink.settings import MAX_TTL_S

log = logging.getLogger(__name__)

OUTPUT_FORMATS = {
    "rtmp": ["-f", "flv"],
    "rtmps": ["-f", "flv"],
    "rtsp": ["-f", "rtsp", "-rtsp_transport", "tcp"],
    "rtsps": ["-f", "rtsp", "-rtsp_transport", "tcp"],
    "srt": ["-f", "mpegts"],
}


def push_args(input_args: list[str], dest: str) -> list[str]:
    """The ffmpeg command line of a push: video stream-copied, progress on stdout."""
    scheme = dest.split("://", 1)[0].lower()
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats",
            "-progress", "pipe:1", *input_args, "-map", "0:v:0", "-c", "copy",
            *OUTPUT_FORMATS[scheme], dest]


@dataclass
class Source:
    """What a push reads: ffmpeg input arguments (ending with -i URL) and the codec."""

    input_args: list[str]
    codec: str | None = None  # h264 | hevc | None (unknown)


class LivePush:
    """One camera stream pushed to `dest` until `until` (None: until stopped)."""

    def __init__(self, camera: str, stream: str, source: Source, dest: str, where: str,
                 until: float | None, *, on_change: Callable[[LivePush], None],
                 redact: Callable[[str], str] = lambda s: s, kind: str = "live",
                 backoff_cap_s: float = 10.0) -> None:
        self.camera = camera
        self.stream = stream
        self.kind = kind
        self.where = where  # dest without secrets, for reports
        self.until = until
        self.started = time.time()
        self.since: float | None = None  # first frame at the server
        self.state = "starting"
        self.reason = ""
        self.bytes = 0  # over every run of the child
        self.kbps = 0
        self._run_bytes = 0
        self._on_change = on_change
        self._lock = threading.Lock()
        self.process = ManagedProcess(
            f"uplink-{kind}-{camera}", lambda: push_args(source.input_args, dest),
            on_state=self._child_state, on_start=self._watch, stdout=subprocess.PIPE,
            stall_after_s=15.0, backoff_min_s=1.0, backoff_cap_s=backoff_cap_s, redact=redact)

    def start(self) -> None:
        self.process.start()

    def stop(self, reason: str) -> None:
        self.process.stop()
        with self._lock:
            self.state, self.reason = "off", reason
        self._on_change(self)

    def doc(self) -> dict[str, Any]:
        """The retained `live/<camera>` payload."""
        return {"camera": self.camera, "state": self.state, "kind": self.kind,
                "stream": self.stream, "to": self.where, "since": self.since,
                "started": self.started, "until": self.until, "kbps": self.kbps,
                "bytes": self.bytes, "reason": self.reason}

    # -- the child ------------------------------------------------------------------------
    def _child_state(self, state: str, reason: str) -> None:
        if state == "offline":
            with self._lock:
                if self.state == "off":
                    return
                self.state, self.reason, self.kbps = "retrying", reason, 0
            self._on_change(self)

    def _watch(self, proc: subprocess.Popen) -> None:
        self._run_bytes = 0
        threading.Thread(target=self._read_progress, args=(proc,), daemon=True,
                         name=f"uplink-progress-{self.camera}").start()

    def _read_progress(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        block: dict[str, str] = {}
        for raw in iter(proc.stdout.readline, b""):
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            block[key] = value
            if key == "progress":
                self._progress(block)
                block = {}

    def _progress(self, block: dict[str, str]) -> None:
        size = block.get("total_size", "")
        frames = block.get("frame", "0")
        changed = False
        with self._lock:
            if size.isdigit():
                self.bytes += int(size) - self._run_bytes
                self._run_bytes = int(size)
            rate = block.get("bitrate", "").removesuffix("kbits/s")
            with contextlib.suppress(ValueError):
                self.kbps = round(float(rate))
            if frames.isdigit() and int(frames) > 0:
                self.process.beat()
                if self.state in ("starting", "retrying"):
                    self.state, self.reason = "live", ""
                    self.since = self.since or time.time()
                    changed = True
        if changed:
            self._on_change(self)


class LiveManager:
    """The node's live pushes, one per camera."""

    def __init__(self, bandwidth: Bandwidth, *, on_state: Callable[[str, dict[str, Any]], None],
                 estimate_kbps: Callable[[str], int]) -> None:
        self.bandwidth = bandwidth
        self.on_state = on_state
        self.estimate_kbps = estimate_kbps  # stream -> assumed kbps before measuring
        self.pushes: dict[str, LivePush] = {}
        self._lock = threading.Lock()
        self.bytes_done = 0  # bytes of pushes that ended

    def start(self, camera: str, stream: str, ttl_s: float, source: Source, dest: str,
              where: str, redact: Callable[[str], str] = lambda s: s) -> tuple[bool, str, dict]:
        """Start (or renew) a push; (ok, message, data) for the command's reply."""
        if not 0 < ttl_s <= MAX_TTL_S:
            return False, f"ttl_s must be in (0, {MAX_TTL_S}] s; send `live` again to renew", {}
        until = time.time() + ttl_s
        with self._lock:
            current = self.pushes.get(camera)
            if current is not None and current.stream == stream and current.state != "off":
                current.until = until
                self._publish(current)
                return True, f"renewed until {time.strftime('%H:%M:%S', time.localtime(until))}", \
                    current.doc()
        if current is not None:
            self.stop(camera, f"replaced by stream {stream}")
        kbps = current.kbps if current is not None and current.stream == stream and \
            current.kbps else self.estimate_kbps(stream)
        why = self.bandwidth.reserve(camera, kbps)
        if why:
            return False, f"cannot send live video: {why}", {}
        push = LivePush(camera, stream, source, dest, where, until, on_change=self._publish,
                        redact=redact)
        with self._lock:
            self.pushes[camera] = push
        push.start()
        self._publish(push)
        return True, f"pushing {camera} ({stream}) to {where}", push.doc()

    def stop(self, camera: str, reason: str) -> bool:
        """End `camera`'s push; False if there was none."""
        with self._lock:
            push = self.pushes.pop(camera, None)
        if push is None:
            return False
        push.stop(reason)
        self.bandwidth.release(camera)
        self.bytes_done += push.bytes
        return True

    def stop_all(self, reason: str) -> None:
        for camera in list(self.pushes):
            self.stop(camera, reason)

    def tick(self, now: float | None = None) -> None:
        """End pushes whose ttl ran out; keep the bandwidth figures current."""
        now = time.time() if now is None else now
        for camera, push in list(self.pushes.items()):
            if push.until is not None and now >= push.until:
                self.stop(camera, "ttl expired")
            elif push.kbps:
                self.bandwidth.update(camera, push.kbps)

    def bytes_sent(self) -> int:
        return self.bytes_done + sum(p.bytes for p in list(self.pushes.values()))

    def health(self) -> dict[str, Any]:
        return {name: {k: v for k, v in p.doc().items() if k in
                       ("state", "stream", "to", "since", "until", "kbps", "bytes", "reason")}
                for name, p in list(self.pushes.items())}

    def _publish(self, push: LivePush) -> None:
        try:
            self.on_state(push.camera, push.doc())
        except Exception:  # reporting must never stop a push
            log.exception("uplink: live state of %s not published", push.camera)
