"""The cameras' runtime services: probes and state refresh, snapshots.

`CameraService` starts the producer cameras (USB, CSI), probes each network camera with
ffprobe on a schedule (retried with `support.backoff` while it fails, left alone while the
recorder has its main stream) and keeps the registry's camera state fresh. `SnapshotService`
is ``snapshot(camera, timeout) -> bytes | None`` and the handler of the ``snapshot`` remote
command.

Neither knows the daemon: `CameraService.run(stopping, beat)` loops until `stopping` is set,
a command's picture goes to ``on_snapshot(camera, jpeg, ts)``, and ``current()`` gives the
node's snapshot function of the moment. ``firmware/wiring/cameras.py`` connects them to the
bus and the supervisor.

Example::

    service = CameraService(registry)
    service.run(stop_event, beat=lambda: None)   # returns when stop_event is set
    service.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from drivers.cameras.base import Camera
from drivers.cameras.probe import ProbeError, probe
from drivers.cameras.registry import CameraRegistry
from drivers.cameras.snapshot import grab_jpeg
from support.backoff import Backoff

log = logging.getLogger(__name__)

Grab = Callable[..., "bytes | None"]  # snapshot(camera, timeout=...) -> JPEG or None


class CommandLike(Protocol):
    """What the snapshot handler needs of a remote command (`firmware.events.Command`)."""

    action: str
    args: dict[str, Any]
    reply: Any  # Callable[[bool, str, dict], None], called exactly once


def _ignore(*args: Any) -> None:
    return None


class CameraService:
    """Runs the producer cameras, probes network cameras and keeps camera state fresh."""

    def __init__(self, registry: CameraRegistry, *,
                 probe_timeout_s: dict[str, float] | None = None,
                 backoff_cap_s: dict[str, float] | None = None, reprobe_s: float = 600.0,
                 idle_reprobe_s: float = 30.0, tick_s: float = 1.0,
                 audio: dict[str, bool] | None = None) -> None:
        self.registry = registry
        self.tick_s = tick_s
        self.reprobe_s = reprobe_s  # a camera whose consumers report on it
        self.idle_reprobe_s = idle_reprobe_s  # nobody reads it: the probe is all we know
        self._probe_timeout = probe_timeout_s or {}
        self._backoff_cap = backoff_cap_s or {}
        self._audio = audio or {}  # the cameras' `audio` settings, for health
        self._next_probe: dict[str, float] = {}
        self._backoff: dict[str, Backoff] = {}  # probe retries of a failing camera
        self._probing: dict[str, threading.Thread] = {}
        self.probes = 0
        self.skipped_probes = 0  # re-probes left out while the recorder had the stream
        self._described: set[str] = set()  # cameras a probe has described
        self._said: dict[str, str] = {}  # last probe failure logged, per camera

    def run(self, stopping: threading.Event, beat: Callable[[], None]) -> None:
        """Start the producers, then probe and refresh every `tick_s` until `stopping`."""
        for cam in self.registry:
            if cam.needs_producer:
                cam.start()
            else:
                self._next_probe[cam.name] = time.monotonic()
        while True:
            self._probe_due()
            self.registry.refresh()
            beat()
            if stopping.wait(self.tick_s):
                return

    def close(self) -> None:
        """Stop the producer cameras (called after every `run`)."""
        for cam in self.registry:
            if cam.needs_producer:
                try:
                    cam.stop()
                except Exception:
                    log.exception("camera %s: stop failed", cam.name)

    def health(self) -> dict[str, Any]:
        """Every camera's state and figures, under `cameras`."""
        return {"cameras": self.registry.health()}

    def summary(self) -> str:
        """How many cameras are online, for systemd's STATUS= line."""
        states = [s["state"] for s in self.registry.health().values()]
        if not states:
            return "no cameras"
        return f"cameras {states.count('online')}/{len(states)} online"

    # ---- probes ------------------------------------------------------------------------
    def _probe_due(self) -> None:
        now = time.monotonic()
        for name, due in list(self._next_probe.items()):
            running = self._probing.get(name)
            delay = self._retry(name).ceiling_s
            if self.registry.state(name)[0] == "offline" and due - now > delay:
                due = self._next_probe[name] = now + delay  # gone offline: find out why
            if due <= now and name in self._described and self._recording(name):
                # Another RTSP session while the recorder records would be one more client
                # of the camera, for nothing: what the probe tells is known already.
                self._next_probe[name] = now + self.reprobe_s
                self.skipped_probes += 1
                continue
            if due <= now and (running is None or not running.is_alive()):
                thread = threading.Thread(target=self._probe_one, args=(self.registry.get(name),),
                                          name=f"probe:{name}", daemon=True)
                self._probing[name] = thread
                self._next_probe[name] = float("inf")  # set again when the probe ends
                thread.start()

    def _retry(self, name: str) -> Backoff:
        """The probe's retry policy for camera `name` (from 2 s up to its backoff cap)."""
        if name not in self._backoff:
            cap = max(self._backoff_cap.get(name, 30.0), 2.0)
            self._backoff[name] = Backoff(2.0, cap, min_s=1.0)
        return self._backoff[name]

    def _probe_one(self, cam: Camera) -> None:
        self.probes += 1
        timeout = self._probe_timeout.get(cam.name, 10.0)
        retry = self._retry(cam.name)
        try:
            info = probe(cam.main, timeout)
        except ProbeError as exc:
            said = self._said.get(cam.name)
            (log.debug if said == exc.reason else log.warning)("camera %s: %s", cam.name,
                                                               exc.reason)
            self._said[cam.name] = exc.reason
            self.registry.report_state(cam.name, "probe", "offline", exc.reason)
            self._next_probe[cam.name] = time.monotonic() + retry.next_delay()
            return
        self._said.pop(cam.name, None)
        self._described.add(cam.name)
        self.registry.expect_fps(cam.name, info.fps, if_unset=True)  # what the camera sends
        self.registry.report_info(cam.name, codec=info.codec,
                                  resolution=f"{info.width}x{info.height}",
                                  probed_fps=info.fps, audio=info.audio_words(
                                      self._audio.get(cam.name)))
        if info.recordable:
            self.registry.report_state(cam.name, "probe", "online", "")
        else:
            self.registry.report_state(
                cam.name, "probe", "degraded",
                f"unsupported codec {info.codec}: set the camera's main stream to H.264 or H.265")
        if self.registry.state(cam.name)[0] == "offline":  # works for us, not for consumers
            self._next_probe[cam.name] = time.monotonic() + retry.next_delay()
            return
        retry.reset()
        consumed = self._consumed(cam.name)
        self._next_probe[cam.name] = time.monotonic() + (
            self.reprobe_s if consumed else self.idle_reprobe_s)

    def _consumed(self, name: str) -> bool:
        """Whether a consumer (recorder, detection) reads the camera's streams."""
        return any(role in ("main", "detect") for role in self.registry.roles(name))

    def _recording(self, name: str) -> bool:
        """Whether the recorder has the camera's main stream now: a re-probe would then
        only tell what the recorder already knows, as one more client of the camera."""
        return self.registry.roles(name).get("main", ("", ""))[0] == "online"


class SnapshotService:
    """`snapshot(camera, timeout)` and the `snapshot` command handler."""

    def __init__(self, registry: CameraRegistry,
                 on_snapshot: Callable[[str, bytes, float], None] = _ignore,
                 current: Callable[[], Grab | None] = lambda: None) -> None:
        self.registry = registry
        self.on_snapshot = on_snapshot  # (camera, jpeg, ts): a command's picture, for others
        self.current = current  # the node's snapshot function now (detection may put a faster
        # one); None: this one

    def __call__(self, camera: str, timeout: float = 3.0) -> bytes | None:
        """A JPEG of `camera` now (from its detect stream), or None."""
        if camera not in self.registry:
            return None
        return grab_jpeg(self.registry.get(camera).detect, timeout)

    def on_command(self, cmd: CommandLike) -> None:
        """Handle `snapshot` commands (others belong to other areas)."""
        if cmd.action != "snapshot":
            return
        threading.Thread(target=self._answer, args=(cmd,), name="snapshot-cmd",
                         daemon=True).start()

    def _answer(self, cmd: CommandLike) -> None:
        camera = cmd.args.get("camera")
        if camera is None and len(self.registry) == 1:
            camera = self.registry.names()[0]
        if not isinstance(camera, str) or camera not in self.registry:
            cmd.reply(False, f"unknown camera {camera!r}; known: "
                             f"{', '.join(self.registry.names()) or 'none'}", {})
            return
        timeout = float(cmd.args.get("timeout", 3.0))
        snapshot = self.current() or self
        jpeg = snapshot(camera, timeout=min(max(timeout, 0.5), 4.5))
        if jpeg is None:
            state, reason = self.registry.state(camera)
            cmd.reply(False, f"no picture from {camera} ({state}{': ' + reason if reason else ''})",
                      {"camera": camera})
            return
        ts = time.time()
        self.on_snapshot(camera, jpeg, ts)
        cmd.reply(True, f"snapshot of {camera}: {len(jpeg)} bytes",
                  {"camera": camera, "bytes": len(jpeg), "ts": ts})
