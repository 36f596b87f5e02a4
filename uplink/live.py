"""Live push: a camera's stream copied (never re-encoded) to the city's media server.

One `LivePush` is one ffmpeg (`-c copy`) under `drivers.managed.ManagedProcess`, so a
media server that goes away is retried with backoff until the push's time is up. Its
`-progress` output gives the bytes sent and the bitrate; the first progress report with
a frame marks the push `live` (`since`).

`LiveManager` keeps the pushes by camera: `start` (a second `live` for the same camera
renews the ttl), `stop`, `add_wall` (the always-on video wall), and `tick()` (called
about twice a second) ends pushes whose ttl ran out, runs the wall within its daily byte
budget and refreshes the measured bitrate in the shared `Bandwidth`. Restarts after a
failed push wait with `support.backoff.Backoff` (capped exponential, full jitter), so a
city's nodes do not all reconnect at once when its media server comes back. Every change of
a push calls `on_state(camera, doc)`; the wiring publishes the doc retained on
`live/<camera>`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drivers.managed import ManagedProcess
from support.backoff import Backoff
from support.files import atomic_write
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


# ffmpeg probes an input for 5 s by default before it sends anything; a camera's RTSP
# stream announces its codec in the SDP and its first keyframe, so 0.3 s (and 1 MB, room
# for a 4K keyframe) is enough: measured, command to first frame 2.5 s -> 1.2-1.4 s.
FAST_START = ["-fflags", "nobuffer", "-analyzeduration", "300000", "-probesize", "1000000"]


def push_args(input_args: list[str], dest: str) -> list[str]:
    """The ffmpeg command line of a push: video stream-copied, progress on stdout."""
    scheme = dest.split("://", 1)[0].lower()
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-nostats",
            "-progress", "pipe:1", "-stats_period", "1", *FAST_START, *input_args,
            "-map", "0:v:0", "-c", "copy", *OUTPUT_FORMATS[scheme], dest]


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
                 backoff_cap_s: float = 10.0, stall_after_s: float = 15.0) -> None:
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
        self._run_frames = 0  # a run whose frame count stops growing is stalled
        self._on_change = on_change
        self._lock = threading.Lock()
        self.process = ManagedProcess(
            f"uplink-{kind}-{camera}", lambda: push_args(source.input_args, dest),
            on_state=self._child_state, on_start=self._watch, stdout=subprocess.PIPE,
            stall_after_s=stall_after_s, backoff_min_s=1.0, backoff_cap_s=backoff_cap_s,
            redact=redact, backoff=Backoff(1.0, max(1.0, backoff_cap_s), min_s=0.5))

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
        self._run_frames = 0
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
            if frames.isdigit() and int(frames) > self._run_frames:
                self._run_frames = int(frames)  # progress: new frames went out
                self.process.beat()
                if self.state in ("starting", "retrying"):
                    self.state, self.reason = "live", ""
                    self.since = self.since or time.time()
                    changed = True
        if changed:
            self._on_change(self)


@dataclass
class Wall:
    """A camera on the always-on video wall: its substream pushed whenever it may be."""

    source: Source
    dest: str
    where: str
    redact: Callable[[str], str]
    budget_bytes: int  # per local day; 0 = no budget
    day: str = ""
    used: int = 0  # bytes sent today
    seen: int = 0  # bytes of the current push already counted in `used`
    reason: str = ""  # why it is not running ('' when it is)


class LiveManager:
    """The node's pushes, at most one per camera: on request (`live`, with a ttl) or for
    the video wall (continuous substream, daily byte budget). A `live` for a camera on
    the wall takes its place (main stream) and the wall resumes when it ends; a `live`
    for the substream of a wall camera is answered from the wall push."""

    def __init__(self, bandwidth: Bandwidth, *, on_state: Callable[[str, dict[str, Any]], None],
                 estimate_kbps: Callable[[str], int], wall_state: Path | None = None) -> None:
        self.bandwidth = bandwidth
        self.on_state = on_state
        self.estimate_kbps = estimate_kbps  # stream -> assumed kbps before measuring
        self.pushes: dict[str, LivePush] = {}
        self.walls: dict[str, Wall] = {}
        self.wall_state = wall_state  # where the day's wall bytes survive a restart
        self._lock = threading.RLock()
        self.bytes_done = 0  # bytes of pushes that ended

    # -- on request -----------------------------------------------------------------------
    def start(self, camera: str, stream: str, ttl_s: float, source: Source, dest: str,
              where: str, redact: Callable[[str], str] = lambda s: s) -> tuple[bool, str, dict]:
        """Start (or renew) a push; (ok, message, data) for the command's reply."""
        if not 0 < ttl_s <= MAX_TTL_S:
            return False, f"ttl_s must be in (0, {MAX_TTL_S}] s; send `live` again to renew", {}
        until = time.time() + ttl_s
        with self._lock:
            current = self.pushes.get(camera)
            if current is not None and current.kind == "wall" and stream == "sub":
                return True, f"{camera} is on the video wall (substream, continuous)", \
                    current.doc()
            if current is not None and current.kind == "live" and current.stream == stream:
                current.until = until
                self._publish(current)
                return True, f"renewed until {time.strftime('%H:%M:%S', time.localtime(until))}", \
                    current.doc()
            kbps = self.estimate_kbps(stream)
            why = self.bandwidth.reserve(camera, kbps)
            if why:
                return False, f"cannot send live video: {why}", {}
            if current is not None:
                self._end(camera, f"replaced by live {stream}" if current.kind == "live"
                          else "paused for a live request")
                self.bandwidth.reserve(camera, kbps)
            push = LivePush(camera, stream, source, dest, where, until, on_change=self._publish,
                            redact=redact)
            self.pushes[camera] = push
        push.start()
        self._publish(push)
        return True, f"pushing {camera} ({stream}) to {where}", push.doc()

    def stop(self, camera: str, reason: str) -> bool:
        """End `camera`'s on-request push; False if there was none (the wall stays)."""
        with self._lock:
            push = self.pushes.get(camera)
            if push is None or push.kind != "live":
                return False
            self._end(camera, reason)
        return True

    def stop_all(self, reason: str) -> None:
        with self._lock:
            for camera in list(self.pushes):
                self._end(camera, reason)
            self._save_walls()

    def _end(self, camera: str, reason: str) -> None:
        push = self.pushes.pop(camera, None)
        if push is None:
            return
        push.stop(reason)
        self.bandwidth.release(camera)
        self.bytes_done += push.bytes
        wall = self.walls.get(camera)
        if wall is not None and push.kind == "wall":
            wall.used += push.bytes - wall.seen
            wall.seen = 0

    # -- the video wall -------------------------------------------------------------------
    def add_wall(self, camera: str, source: Source, dest: str, where: str,
                 redact: Callable[[str], str] = lambda s: s, budget_bytes: int = 0) -> None:
        """Keep `camera`'s substream pushed from the next `tick()` on."""
        wall = Wall(source, dest, where, redact, budget_bytes)
        saved = self._load_walls().get(camera, {})
        if saved.get("day") == _today():
            wall.day, wall.used = saved["day"], int(saved.get("used", 0))
        self.walls[camera] = wall

    def _tick_wall(self, camera: str, wall: Wall) -> None:
        today = _today()
        push = self.pushes.get(camera)
        if wall.day != today:  # a new day: a new budget
            wall.day, wall.used = today, 0
            wall.seen = push.bytes if push is not None and push.kind == "wall" else 0
        if push is not None and push.kind == "wall":
            wall.used += push.bytes - wall.seen
            wall.seen = push.bytes
            if wall.budget_bytes and wall.used >= wall.budget_bytes:
                wall.reason = (f"daily budget of {wall.budget_bytes / 1e6:.1f} MB used; "
                               "resumes at midnight")
                log.warning("uplink: video wall %s: %s", camera, wall.reason)
                self._end(camera, wall.reason)
                self._save_walls()
            return
        if push is not None or (wall.budget_bytes and wall.used >= wall.budget_bytes):
            return
        why = self.bandwidth.reserve(camera, self.estimate_kbps("sub"))
        if why:
            if wall.reason != why:
                wall.reason = why
                self._publish_doc(camera, {"camera": camera, "state": "off", "kind": "wall",
                                           "stream": "sub", "to": wall.where, "since": None,
                                           "started": time.time(), "until": None, "kbps": 0,
                                           "bytes": 0, "reason": f"not sent: {why}"})
            return
        wall.reason, wall.seen = "", 0
        push = LivePush(camera, "sub", wall.source, wall.dest, wall.where, None,
                        on_change=self._publish, redact=wall.redact, kind="wall",
                        backoff_cap_s=60.0)
        self.pushes[camera] = push
        push.start()
        self._publish(push)

    def _load_walls(self) -> dict[str, Any]:
        if self.wall_state is None:
            return {}
        try:
            return json.loads(self.wall_state.read_text())
        except (OSError, ValueError):
            return {}

    def _save_walls(self) -> None:
        if self.wall_state is None or not self.walls:
            return
        doc = {cam: {"day": w.day, "used": w.used} for cam, w in self.walls.items()}
        try:
            atomic_write(self.wall_state, json.dumps(doc), durable=False)
        except OSError as exc:  # the budget then restarts with the process
            log.warning("uplink: video wall usage not stored: %s", exc)

    # -- the clock ------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """End pushes whose ttl ran out, run the wall, keep the bandwidth figures current."""
        now = time.time() if now is None else now
        with self._lock:
            for camera, push in list(self.pushes.items()):
                if push.until is not None and now >= push.until:
                    self._end(camera, "ttl expired")
                elif push.kbps:
                    self.bandwidth.update(camera, push.kbps)
            for camera, wall in self.walls.items():
                self._tick_wall(camera, wall)
            self._ticks = getattr(self, "_ticks", 0) + 1
            if self.walls and self._ticks % 60 == 0:
                self._save_walls()

    def bytes_sent(self) -> int:
        return self.bytes_done + sum(p.bytes for p in list(self.pushes.values()))

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            name: {k: v for k, v in p.doc().items() if k in
                   ("state", "kind", "stream", "to", "since", "until", "kbps", "bytes", "reason")}
            for name, p in list(self.pushes.items())}
        for name, wall in self.walls.items():
            out.setdefault(name, {"state": "off", "kind": "wall", "reason": wall.reason})
            out[name]["wall_bytes_today"] = wall.used
            out[name]["wall_budget_bytes"] = wall.budget_bytes
        return out

    def _publish(self, push: LivePush) -> None:
        self._publish_doc(push.camera, push.doc())

    def _publish_doc(self, camera: str, doc: dict[str, Any]) -> None:
        try:
            self.on_state(camera, doc)
        except Exception:  # reporting must never stop a push
            log.exception("uplink: live state of %s not published", camera)


def _today() -> str:
    return time.strftime("%Y-%m-%d")
