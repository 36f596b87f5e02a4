"""The camera registry: which cameras there are, and how each is doing.

Consumers report what they see of a camera's streams: the recorder as role ``main``,
detection as role ``detect``; producer cameras report their producer as role
``source`` and the probe as role ``probe``. The registry turns these reports into one
camera state:

- ``online``: every reporting role is online (and no frame rate is far too low);
- ``offline``: every reporting role is offline, or the producer (``source``) is;
- ``degraded``: some roles online, others not, or an online stream at a low frame
  rate, or a probe finding (unsupported codec); `reason` says which.

Frame rates: each stream role is judged against the rate *that role* should deliver. The
recorder's ``main`` (and a producer's ``source``) carries the camera's own rate (configured
or probed, `expected_fps`); detection decodes its ``detect`` stream down to the rate it
asked for (``[detect] fps``, e.g. 5 of a 15 fps camera), so it declares that rate when it
reports (``report_frames(..., expected_fps=5)``); a role that declares nothing and has no
camera rate to go by is not judged. A role counts as slow below `low_fps_ratio` of its
rate and as recovered only at `recover_fps_ratio` (hysteresis: a rate hovering at the
threshold does not flap the camera), and the reason keeps the rate measured when it went
slow, so a slow camera gives one event, not one per refresh.

Each change of (state, reason) is passed to `on_change(camera, state, reason)` (the
wiring turns it into a `CameraStateEvent`). Thread-safe: consumers call from their own
threads.

Example::

    registry = CameraRegistry([cam], on_change=print)
    registry.report_state("gate", "main", "online", "")
    registry.report_frames("gate", "detect", 15)
    registry.health()["gate"]["state"]   # 'online'
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from drivers.cameras.base import Camera, mask_credentials
from drivers.cameras.errors import explain

log = logging.getLogger(__name__)

ROLES = ("source", "probe", "main", "detect")
FPS_WINDOW_S = 10.0
FPS_LONG_WINDOW_S = 60.0  # for consumers that report once per segment
# ffmpeg delivers the frames it buffered while probing the input in a burst after it
# starts: samples this soon after a role went online are left out of its frame rate.
FPS_SETTLE_S = 1.5


@dataclass
class _Role:
    state: str = "starting"
    reason: str = ""
    since: float = field(default_factory=time.monotonic)
    frames: collections.deque[tuple[float, int]] = field(
        default_factory=lambda: collections.deque(maxlen=256))
    expected_fps: float | None = None  # what the consumer asked this role to deliver
    slow: str = ""  # the low-frame-rate reason while this role counts as slow

    def fps(self, now: float, settle_s: float = FPS_SETTLE_S) -> float | None:
        settled = self.since + settle_s if self.state == "online" else 0.0
        recent = [(t, n) for t, n in self.frames if now - t <= FPS_WINDOW_S and t >= settled]
        if len(recent) < 2:  # a consumer that reports per segment: look further back
            recent = [(t, n) for t, n in self.frames
                      if now - t <= FPS_LONG_WINDOW_S and t >= settled]
        if len(recent) < 2:
            return None
        span = recent[-1][0] - recent[0][0]
        if span <= 0:
            return None
        return sum(n for _, n in recent[1:]) / span


@dataclass
class _CameraStatus:
    camera: Camera
    expected_fps: float | None
    roles: dict[str, _Role] = field(default_factory=dict)
    state: str = "starting"
    reason: str = ""
    reconnects: int = 0
    ever_online: bool = False
    last_error: str = ""
    last_error_ts: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


class CameraRegistry:
    """Cameras by name, with the state their consumers report."""

    def __init__(
        self,
        cameras: list[Camera],
        on_change: Callable[[str, str, str], None] | None = None,
        *,
        expected_fps: dict[str, float] | None = None,
        low_fps_ratio: float = 0.5,
        recover_fps_ratio: float | None = None,
        fps_settle_s: float = FPS_SETTLE_S,
    ) -> None:
        self._lock = threading.RLock()
        self._on_change = on_change or (lambda camera, state, reason: None)
        self.low_fps_ratio = low_fps_ratio
        # a slow role is well again only above this (hysteresis against flapping)
        self.recover_fps_ratio = max(low_fps_ratio, recover_fps_ratio
                                     if recover_fps_ratio is not None else low_fps_ratio + 0.15)
        self.fps_settle_s = fps_settle_s
        self._reachable: list[Callable[[str], None]] = []
        self._cams: dict[str, _CameraStatus] = {}
        for cam in cameras:
            self._cams[cam.name] = _CameraStatus(cam, (expected_fps or {}).get(cam.name))
            cam.on_source_state = self._source_reporter(cam.name)

    # ---- lookup ------------------------------------------------------------------------
    def get(self, name: str) -> Camera:
        """The camera called `name`; KeyError names the known ones."""
        try:
            return self._cams[name].camera
        except KeyError:
            raise KeyError(f"no camera {name!r} (known: {', '.join(self._cams) or 'none'})") \
                from None

    def names(self) -> list[str]:
        """Camera names in config order."""
        return list(self._cams)

    def __iter__(self) -> Iterator[Camera]:
        return iter([s.camera for s in self._cams.values()])

    def __len__(self) -> int:
        return len(self._cams)

    def __contains__(self, name: object) -> bool:
        return name in self._cams

    # ---- reports -----------------------------------------------------------------------
    def report_state(self, name: str, role: str, state: str, reason: str = "") -> None:
        """A consumer (`role` main/detect) or producer (source) went online or offline."""
        if state not in ("online", "offline", "degraded"):
            raise ValueError(f"state must be online, offline or degraded, not {state!r}")
        # a consumer's reason may be a raw ffmpeg line naming the URL with its password:
        # masked here, so neither health nor a CameraStateEvent can carry it
        reason = mask_credentials(reason or "")
        with self._lock:
            status = self._status(name)
            entry = status.roles.setdefault(role, _Role())
            if state != "online" and reason:
                status.last_error = f"{role}: {reason}"
                status.last_error_ts = time.time()
            if (entry.state, entry.reason) != (state, reason):
                if entry.state != state:
                    entry.frames.clear()
                    entry.slow = ""
                entry.state, entry.reason, entry.since = state, reason, time.monotonic()
            self._derive(status)
        if role == "probe" and state != "offline":
            for callback in self._reachable:
                try:
                    callback(name)
                except Exception:  # a failing listener must not break the probe
                    log.exception("reachable listener failed")

    def on_reachable(self, callback: Callable[[str], None]) -> None:
        """Call `callback(name)` whenever a probe of camera `name` worked: consumers
        waiting out a backoff (the recorder) restart at once."""
        self._reachable.append(callback)

    def report_frames(self, name: str, role: str, count: int, *,
                      expected_fps: float | None = None) -> None:
        """`count` more frames (or packets) of `role` were read since the last report.

        `expected_fps`: the rate this consumer asked of the role (detection decodes at
        ``[detect] fps``); the role's frame rate is judged against it instead of the camera's.
        """
        with self._lock:
            status = self._status(name)
            entry = status.roles.setdefault(role, _Role())
            entry.frames.append((time.monotonic(), int(count)))
            if expected_fps:
                entry.expected_fps = float(expected_fps)

    def expect_fps(self, name: str, fps: float | None, *, if_unset: bool = False) -> None:
        """The frame rate below which (x `low_fps_ratio`) the camera counts as degraded."""
        with self._lock:
            status = self._status(name)
            if not (if_unset and status.expected_fps):
                status.expected_fps = fps

    def report_info(self, name: str, **info: Any) -> None:
        """Driver facts for health (codec, resolution, fps as probed)."""
        info = {k: mask_credentials(v) if isinstance(v, str) else v for k, v in info.items()}
        with self._lock:
            self._status(name).info.update(info)

    def refresh(self) -> None:
        """Re-derive states that depend on time (frame rate); call every few seconds."""
        with self._lock:
            for status in self._cams.values():
                self._derive(status)

    # ---- views -------------------------------------------------------------------------
    def state(self, name: str) -> tuple[str, str]:
        """(state, reason) of one camera."""
        with self._lock:
            status = self._status(name)
            return status.state, status.reason

    def roles(self, name: str) -> dict[str, tuple[str, str]]:
        """What each role last reported for one camera: {role: (state, reason)}."""
        with self._lock:
            return {role: (r.state, r.reason) for role, r in self._status(name).roles.items()}

    def health(self) -> dict[str, dict[str, Any]]:
        """Per camera: state, reason, fps, reconnects, last_error, kind, stream, roles."""
        now = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        with self._lock:
            for name, status in self._cams.items():
                fps = self._fps(status, now)
                out[name] = {
                    "state": status.state,
                    "reason": status.reason,
                    "fps": self._round(fps),
                    "reconnects": status.reconnects,
                    "last_error": status.last_error or None,
                    "last_error_ts": status.last_error_ts,
                    "kind": status.camera.kind,
                    "stream": str(status.camera.main),
                    "detect_stream": str(status.camera.detect),
                    "roles": {
                        role: {"state": r.state, "reason": r.reason,
                               "for_s": round(now - r.since, 1),
                               "fps": self._round(r.fps(now, self.fps_settle_s))}
                        for role, r in status.roles.items()
                    },
                    **status.info,
                    **status.camera.health(),
                }
        return out

    # ---- internals ---------------------------------------------------------------------
    def _status(self, name: str) -> _CameraStatus:
        try:
            return self._cams[name]
        except KeyError:
            raise KeyError(f"no camera {name!r}") from None

    def _source_reporter(self, name: str) -> Callable[[str, str], None]:
        return lambda state, reason: self.report_state(name, "source", state, reason)

    @staticmethod
    def _round(value: float | None) -> float | None:
        return None if value is None else round(value, 1)

    def _fps(self, status: _CameraStatus, now: float) -> float | None:
        for role in ("main", "detect", "source"):
            entry = status.roles.get(role)
            if entry is not None and entry.state == "online":
                fps = entry.fps(now, self.fps_settle_s)
                if fps is not None:
                    return fps
        return None

    def _derive(self, status: _CameraStatus) -> None:
        state, reason = self._decide(status)
        if (state, reason) == (status.state, status.reason):
            return
        if status.state == "offline" and state in ("online", "degraded") and status.ever_online:
            status.reconnects += 1
        if state in ("online", "degraded"):
            status.ever_online = True
        status.state, status.reason = state, reason
        try:
            self._on_change(status.camera.name, state, reason)
        except Exception:  # a failing listener must not break the consumer that reported
            log.exception("camera state listener failed")

    def _decide(self, status: _CameraStatus) -> tuple[str, str]:
        roles = {k: v for k, v in status.roles.items() if v.state != "starting"}
        if not roles:
            return "starting", ""
        source = roles.get("source")
        if source is not None and source.state == "offline":
            return "offline", explain(source.reason) or "producer stopped"
        streams = {k: v for k, v in roles.items() if k not in ("source", "probe")}
        probe = roles.get("probe")
        if not streams:  # nobody consumes yet: the probe (or the producer) is all we know
            if probe is not None and probe.state == "offline":
                return "offline", explain(probe.reason)
            if probe is not None and probe.state == "degraded":
                return "degraded", probe.reason
            return "online", ""
        down = {k: v for k, v in streams.items() if v.state == "offline"}
        if len(down) == len(streams):
            if probe is not None and probe.state != "online":  # the probe knows the cause
                return "offline", explain(probe.reason)
            role, entry = sorted(down.items(), key=lambda kv: ROLES.index(kv[0])
                                 if kv[0] in ROLES else 99)[0]
            return "offline", explain(entry.reason) or f"{role} stream stopped"
        if down:
            role, entry = next(iter(sorted(down.items())))
            return "degraded", f"{role} stream offline: {explain(entry.reason)}".rstrip(": ")
        if probe is not None and probe.state == "degraded":
            return "degraded", probe.reason
        for role, entry in streams.items():
            if entry.state == "degraded":
                return "degraded", f"{role}: {entry.reason}"
        now = time.monotonic()
        slow = ""
        for role in ("main", "source", "detect"):
            entry = roles.get(role)
            if entry is not None and entry.state == "online":
                self._judge_rate(status, role, entry, now)
                slow = slow or entry.slow
        if slow:
            return "degraded", slow
        return "online", ""

    def _role_expected_fps(self, status: _CameraStatus, role: str, entry: _Role) -> float | None:
        """The rate `role` should deliver: what its consumer declared (never more than the
        camera sends), else the camera's own rate for the streams that carry it; the detect
        stream without a declaration is not judged (its consumer decodes at its own rate)."""
        if entry.expected_fps:
            return min(entry.expected_fps, status.expected_fps or entry.expected_fps)
        return status.expected_fps if role in ("main", "source") else None

    def _judge_rate(self, status: _CameraStatus, role: str, entry: _Role, now: float) -> None:
        """Mark `entry` slow below low_fps_ratio of its rate; well again at recover_fps_ratio."""
        expected = self._role_expected_fps(status, role, entry)
        if not expected:
            entry.slow = ""
            return
        fps = entry.fps(now, self.fps_settle_s)
        if fps is None:  # no recent figure: keep the verdict
            return
        if entry.slow and fps >= expected * self.recover_fps_ratio:
            entry.slow = ""
        elif not entry.slow and fps < expected * self.low_fps_ratio:
            where = "" if role == "main" else f" ({role} stream)"
            entry.slow = f"low frame rate: {fps:.1f} fps of {expected:g}{where}"
