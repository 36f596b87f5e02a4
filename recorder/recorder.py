"""The recorder: every camera's segments into one store, retention on every segment
close, and a storage state machine.

States: ``starting`` -> ``ok`` <-> ``degraded``. A storage fault (disk full, read-only
remount, I/O error, disk missing) seen anywhere (a commit, a deletion, ffmpeg's last
words, the periodic check) degrades the store: ffmpegs are stopped and the index closed,
so that nothing holds the broken filesystem (it can be unmounted, checked, replaced).
Reopening is retried with capped exponential backoff; a reopen recovers the store
(orphans, garbage) and restarts the cameras.

Example::

    rec = Recorder(Path("/srv/rec"), {"gate": StreamInput("rtsp://cam/main")},
                   segment_s=10, limits=Limits(quota=200 * 2**30),
                   on_storage_state=lambda state, reason, detail: print(state, reason))
    stop = threading.Event()
    rec.run(stop)   # blocks; set `stop` from another thread
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from drivers.cameras.base import StreamInput
from recorder.camera import CameraRecorder
from recorder.index import Clip, Segment
from recorder.store import Limits, StorageFault, Store, classify, classify_text
from support.backoff import Backoff

log = logging.getLogger(__name__)

StateCallback = Callable[[str, str, str], None]  # camera, state, reason
StorageCallback = Callable[[str, str, dict[str, Any]], None]  # state, reason, detail


class Recorder:
    """Records `cameras` ({name: StreamInput}) into the store at `root`. Per camera,
    `ready` ({name: reachable()}) restarts its ffmpeg as soon as the camera answers again
    and `backoff_cap_s` ({name: seconds}) caps its restart backoff (default 30 s)."""

    def __init__(
        self,
        root: Path,
        cameras: dict[str, StreamInput],
        *,
        segment_s: float = 10.0,
        limits: Limits,
        require_mount: bool = False,
        on_state: StateCallback | None = None,
        on_storage_state: StorageCallback | None = None,
        on_frames: Callable[[str, int], None] | None = None,
        on_segment: Callable[[str, Segment], None] | None = None,
        check_every_s: float = 5.0,
        retry_min_s: float = 1.0,
        retry_cap_s: float = 30.0,
        ready: dict[str, Callable[[], bool | None]] | None = None,
        backoff_cap_s: dict[str, float] | None = None,
        audio: dict[str, bool] | None = None,
        fps: dict[str, float | None] | None = None,
        camera_segment_s: dict[str, float] | None = None,
    ) -> None:
        ready = ready or {}
        backoff_cap_s = backoff_cap_s or {}
        audio = audio or {}
        fps = fps or {}
        self.store = Store(root, limits, require_mount=require_mount)
        self.segment_s = segment_s
        self._on_state = on_state or (lambda camera, state, reason: None)
        self._on_storage_state = on_storage_state or (lambda state, reason, detail: None)
        self._on_segment = on_segment
        self.check_every_s = check_every_s
        self.retry_min_s = retry_min_s
        self.retry_cap_s = retry_cap_s
        self.cameras = {
            name: CameraRecorder(name, source, self.store,
                                 (camera_segment_s or {}).get(name, segment_s),
                                 on_segment=self._segment_closed, on_state=self._camera_state,
                                 on_frames=on_frames, on_error=self._camera_error,
                                 backoff_cap_s=backoff_cap_s.get(name, 30.0),
                                 ready=ready.get(name), audio=audio.get(name, False),
                                 fps=fps.get(name))
            for name, source in cameras.items()
        }
        self.store.on_release = self._clip_released
        self.state = "starting"
        self.reason = ""
        self.detail = ""
        self.released_clips = 0  # since start; the index counts them for good
        self.faults = 0
        self._pending: tuple[str, str] | None = None
        self._probe_requested = False
        self._unapplied: list[tuple[str, float, float, tuple[str, ...]]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._backoff = Backoff(retry_min_s, retry_cap_s, min_s=min(0.5, retry_min_s))
        self._retry_at = 0.0
        self._next_check = 0.0
        self._written: collections.deque[tuple[float, int]] = collections.deque()
        self._figures: dict[str, Any] = {}
        self._recovery: dict[str, int] = {}
        self._recording = False
        self._beat: Callable[[], None] = lambda: None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Open (and recover) the store and start recording; degrade if it cannot."""
        try:
            self._recovery = self.store.open()
            self.store.make_space(self._headroom())
        except (StorageFault, OSError, sqlite3.Error) as exc:
            self._degrade(classify(exc), getattr(exc, "detail", str(exc)))
            return
        self._apply_unapplied()
        self._set_state("ok", "")
        self._start_cameras()

    def poll(self) -> None:
        """One turn of the state machine: act on faults, check the disk, retry."""
        now = time.monotonic()
        with self._lock:
            pending, self._pending = self._pending, None
        if self.state == "ok":
            if pending is None and self._unapplied:  # asked for while the store reopened
                self._apply_unapplied()
            if pending is None and self._probe_requested:
                self._probe_requested = False
                try:
                    self.store.probe_write()
                except Exception as exc:
                    pending = (classify(exc), str(exc))
            if pending is None and now >= self._next_check:
                self._next_check = now + self.check_every_s
                try:
                    self.store.check()
                    self.store.make_space(self._headroom())
                except Exception as exc:
                    pending = (classify(exc), str(exc))
            if pending is not None:
                self._degrade(*pending)
        elif self.state == "degraded" and now >= self._retry_at:
            self._resume()

    def run(self, stop: threading.Event, interval_s: float = 1.0,
            beat: Callable[[], None] | None = None) -> None:
        """start(), then poll() until `stop` is set, then stop(). `beat` is called each
        turn and also during long work (recovery of many leftovers, stopping cameras),
        from this thread only: a beat from a camera thread would hide a stall here."""
        if beat is not None:
            runner = threading.current_thread()

            def progress() -> None:
                if threading.current_thread() is runner:
                    beat()

            self._beat = progress
            self.store.on_progress = progress
        self.start()
        try:
            while not stop.is_set():
                self.poll()
                if beat is not None:
                    beat()
                self._wake.wait(interval_s)
                self._wake.clear()
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop ffmpegs, commit the segments they closed on the way out, close the index."""
        was_recording = self._recording
        self._stop_cameras()
        if was_recording and self.store.is_open:
            for name in self.cameras:
                try:
                    self.store.sweep_incoming(name)
                except Exception as exc:  # the next start sweeps again
                    log.warning("%s: could not commit the last segment: %s", name, exc)
        self._close_store()

    def protect(self, event_id: str, start: float, end: float,
                cameras: Iterable[str] = ()) -> None:
        """Keep footage of `cameras` (all when empty) from `start` to `end` (epoch s).
        While the store is closed (degraded, not yet started) the request is kept and
        applied as soon as the store is open."""
        request = (event_id, start, end, tuple(cameras))
        try:
            self.store.protect(*request)
        except (StorageFault, OSError, sqlite3.Error) as exc:
            log.warning("clip %s: store unavailable (%s); protecting it when it is back",
                        event_id, exc)
            with self._lock:
                self._unapplied.append(request)

    def release(self, event_id: str) -> None:
        """Undo `protect(event_id, ...)`: a range kept only while it was needed (an upload).
        A request made while the store is closed is dropped from the unapplied ones, or
        logged: the range then stays protected until rotation forgets the clip."""
        with self._lock:
            self._unapplied = [r for r in self._unapplied if r[0] != event_id]
        try:
            self.store.release(event_id)
        except (StorageFault, OSError, sqlite3.Error) as exc:
            log.warning("clip %s: not released, store unavailable (%s)", event_id, exc)

    # -- internals --------------------------------------------------------------------
    def _start_cameras(self) -> None:
        if not self._recording:
            self._recording = True
            for cam in self.cameras.values():
                cam.start()

    def _stop_cameras(self) -> None:
        if self._recording:
            self._recording = False
            for cam in self.cameras.values():
                self._beat()  # each may take seconds (ffmpeg's exit, its last segment)
                cam.stop()

    def _close_store(self) -> None:
        """Close the index, keeping its last figures for health()."""
        if self.store.is_open:
            with contextlib.suppress(Exception):  # the disk may be gone already
                self._figures = self.store.figures()
        self.store.close()

    def _headroom(self) -> dict[str, int]:
        return {name: cam.headroom() for name, cam in self.cameras.items()}

    def _set_state(self, state: str, reason: str, detail: dict[str, Any] | None = None) -> None:
        previous = self.state
        if (state, reason) == (previous, self.reason):
            return
        self.state, self.reason = state, reason
        if state == "ok" and previous == "starting":
            return  # a normal start is not news
        try:
            self._on_storage_state(state, reason, detail or {})
        except Exception:
            log.exception("storage state callback failed")

    def _degrade(self, reason: str, detail: str) -> None:
        log.error("recordings store degraded: %s (%s)", reason, detail)
        self.faults += 1
        self._stop_cameras()
        self._close_store()
        for name in self.cameras:
            self._on_state(name, "offline", f"storage {reason}")
        self._backoff.reset()
        self._retry_at = time.monotonic() + self._backoff.next_delay()
        self.detail = detail
        self._set_state("degraded", reason, {"detail": detail, "path": str(self.store.root)})

    def _resume(self) -> None:
        try:
            self._recovery = self.store.open()
            self.store.make_space(self._headroom())
        except (StorageFault, OSError, sqlite3.Error) as exc:
            self.store.close()
            self._retry_at = time.monotonic() + self._backoff.next_delay()
            reason = classify(exc)
            self.detail = getattr(exc, "detail", str(exc))
            if reason != self.reason:
                self._set_state("degraded", reason, {"detail": getattr(exc, "detail", str(exc)),
                                                     "path": str(self.store.root)})
            return
        log.info("recordings store usable again after %s", self.reason)
        self.detail = ""
        with self._lock:
            self._pending = None
        self._apply_unapplied()
        self._set_state("ok", "", {"recovered_from": self.reason, **self._recovery})
        self._next_check = time.monotonic() + self.check_every_s
        self._start_cameras()

    def _apply_unapplied(self) -> None:
        """Protect the clips asked for while the store was closed (degraded, or not yet
        open: a request that arrives before or while the recorder starts)."""
        with self._lock:
            unapplied, self._unapplied = self._unapplied, []
        for request in unapplied:
            self.protect(*request)  # queued again if the store went away meanwhile

    def _fault(self, reason: str, detail: str) -> None:
        with self._lock:
            if self._pending is None:
                self._pending = (reason, detail)
        self._wake.set()

    def retry_now(self, camera: str) -> None:
        """`camera` was seen reachable again (its probe worked): restart its ffmpeg now if
        it is waiting out a backoff."""
        cam = self.cameras.get(camera)
        if cam is not None:
            cam.retry_now()

    def _clip_released(self, clip: Clip, covered: int) -> None:
        """The event share took a clip's protection away (called under the store lock)."""
        self.released_clips += 1
        share = self.store.limits.event_share * self.store.limits.quota
        log.warning("protected clip %s (%s, %.1f MB) released: protected footage exceeds the "
                    "event share (%.0f MB); its footage now ages out like any other. Raise "
                    "[recorder] event_share or quota (docs/storage.md)", clip.event_id,
                    ",".join(clip.cameras) or "all cameras", covered / 1e6, share / 1e6)
        try:
            self._on_storage_state(self.state, "clip-released", {
                "event_id": clip.event_id, "start": clip.start, "end": clip.end,
                "cameras": list(clip.cameras), "bytes": covered,
                "event_share_bytes": int(share)})
        except Exception:
            log.exception("storage state callback failed")

    # -- callbacks from camera threads --------------------------------------------------
    def _segment_closed(self, camera: str, segment: Segment) -> None:
        now = time.monotonic()
        with self._lock:
            self._written.append((now, segment.bytes))
            while self._written and self._written[0][0] < now - 60:
                self._written.popleft()
        try:
            self.store.make_space(self._headroom())
        except Exception as exc:
            self._fault(classify(exc), str(exc))
        if self._on_segment is not None:
            self._on_segment(camera, segment)

    def _camera_error(self, camera: str, exc: BaseException) -> None:
        log.warning("%s: storage error: %s", camera, exc)
        self._fault(classify(exc), f"{camera}: {exc}")

    def _camera_state(self, camera: str, state: str, reason: str) -> None:
        if state == "offline" and self._recording:
            fault = classify_text(reason)
            if fault in ("disk-full", "read-only"):  # only a local disk says these
                self._fault(fault, f"{camera}: {reason}")
            else:
                # "Input/output error" is also how ffmpeg reports a dead RTSP camera:
                # let the poll thread find out whether the disk takes writes.
                self._probe_requested = True
                self._wake.set()
        self._on_state(camera, state, reason)

    # -- figures ------------------------------------------------------------------------
    def write_rate(self) -> float:
        """Bytes per second committed over the last minute."""
        with self._lock:
            written = list(self._written)
        if len(written) < 2:
            return 0.0
        span = max(written[-1][0] - written[0][0], self.segment_s)
        return sum(b for _, b in written) / span

    def health(self) -> dict[str, Any]:
        if self.store.is_open:
            # the disk may have just gone: then keep the last figures
            with contextlib.suppress(Exception):
                self._figures = self.store.figures()
        figures = dict(self._figures)
        counters = figures.pop("counters", {})
        return {
            "state": self.state,
            "reason": self.reason,
            "detail": self.detail or None,
            **figures,
            "write_rate_bps": round(self.write_rate()),
            "recovered": counters.get("recovered", 0),
            "garbage": counters.get("garbage", 0),
            "last_recovery": dict(self._recovery),
            "faults": self.faults,
            "released_clips": counters.get("released_clips", 0),
            "cameras": {name: cam.health() for name, cam in self.cameras.items()},
        }

    def summary(self) -> str:
        if self.state == "degraded":
            other = self.detail.split(":", 1)[0] if self.detail.startswith("something else") \
                else ""
            return f"recorder degraded: {self.reason}" + (f" ({other})" if other else "")
        return f"recording {sum(c.process.state == 'online' for c in self.cameras.values())}" \
               f"/{len(self.cameras)}"
