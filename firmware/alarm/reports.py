"""The slow path of an alarm: what the world hears about it, and what survives a crash.

Runs on one worker thread, in the order things happened: bus messages (events, clips,
snapshots), the `alarm.json` state file (write, fsync, rename), and one snapshot thread
per camera. Nothing here can delay the siren, which is already sounding.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from firmware.alarm.settings import AlarmSettings
from firmware.alarm.store import JsonFile
from firmware.events import AlarmEvent, Message, PanicEvent, ProtectClip, Snapshot

log = logging.getLogger(__name__)

Publish = Callable[[Message], None]
SnapshotFn = Callable[..., "bytes | None"]


@dataclass
class ActiveAlarm:
    """The alarm in progress (also what `alarm.json` holds)."""

    alarm_id: str
    kind: str
    source: str
    started: float  # wall clock
    presses: int = 1
    silenced: bool = False
    started_mono: float = dataclasses.field(default_factory=time.monotonic)

    def to_json(self) -> dict[str, Any]:
        """The persisted form (without the process-local monotonic start)."""
        data = dataclasses.asdict(self)
        data.pop("started_mono")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActiveAlarm:
        """Read back `to_json()`; raises KeyError/TypeError/ValueError on a damaged record."""
        return cls(alarm_id=str(data["alarm_id"]), kind=str(data.get("kind", "panic")),
                   source=str(data.get("source", "")), started=float(data["started"]),
                   presses=int(data.get("presses", 1)),
                   silenced=bool(data.get("silenced", False)))


class AlarmReporter:
    """Publishes an alarm's phases, protects its footage, persists it; one worker thread."""

    def __init__(self, settings: AlarmSettings, publish: Publish, store: JsonFile, *,
                 cameras: Callable[[], list[str]] = list,
                 snapshot: Callable[[], SnapshotFn | None] = lambda: None) -> None:
        self.settings = settings
        self.publish = publish
        self.store = store
        self.cameras = cameras
        self.snapshot = snapshot
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._work, name="alarm-worker", daemon=True)
        self._worker.start()

    def submit(self, job: Callable[[], None]) -> None:
        """Run `job` on the worker, after what is already queued. Never blocks."""
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job()
            except Exception:
                log.exception("alarm job failed")

    # -- jobs (worker thread) ----------------------------------------------------------
    def raised(self, alarm: ActiveAlarm) -> None:
        """The alarm started: event (its id is the alarm id), clip, state file, snapshots."""
        log.warning("ALARM %s raised: %s by %s", alarm.alarm_id, alarm.kind, alarm.source)
        cls = PanicEvent if alarm.kind == "panic" else AlarmEvent
        self.publish(cls(id=alarm.alarm_id, ts=alarm.started, alarm_id=alarm.alarm_id,
                         kind=alarm.kind, phase="raised", source=alarm.source, presses=1))
        self.protect(alarm, alarm.started + self.settings.post_s)
        self.save(alarm)
        self.take_snapshots(alarm)

    def phase(self, alarm: ActiveAlarm, phase: str, source: str) -> None:
        """A later phase (silenced, cleared, recovered) as an `AlarmEvent`."""
        log.info("alarm %s %s (%s, %d presses)", alarm.alarm_id, phase, source, alarm.presses)
        self.publish(AlarmEvent(alarm_id=alarm.alarm_id, kind=alarm.kind, phase=phase,
                                source=source, presses=alarm.presses))

    def protect(self, alarm: ActiveAlarm, end: float) -> None:
        """Keep every camera's footage from pre_s before the alarm to `end`."""
        self.publish(ProtectClip(event_id=alarm.alarm_id,
                                 start=alarm.started - self.settings.pre_s, end=end))

    def save(self, alarm: ActiveAlarm) -> None:
        """Persist the active alarm (a full or read-only disk is logged, not raised)."""
        try:
            self.store.save(alarm.to_json())
        except OSError as exc:
            log.error("cannot persist the alarm to %s: %s", self.store.path, exc)

    def forget(self) -> None:
        """No alarm is active any more: remove the state file."""
        try:
            self.store.clear()
        except OSError as exc:
            log.error("cannot clear %s: %s", self.store.path, exc)

    def take_snapshots(self, alarm: ActiveAlarm) -> None:
        """One `Snapshot` per enabled camera, each fetched on its own thread."""
        fn = self.snapshot()
        if fn is None:
            return
        for camera in self.cameras():
            threading.Thread(target=self._snapshot_one, args=(fn, camera, alarm),
                             name=f"alarm-snap:{camera}", daemon=True).start()

    def _snapshot_one(self, fn: SnapshotFn, camera: str, alarm: ActiveAlarm) -> None:
        try:
            jpeg = fn(camera, timeout=self.settings.snapshot_timeout_s)
        except Exception as exc:
            log.warning("alarm %s: no snapshot of %s: %s", alarm.alarm_id, camera, exc)
            return
        if jpeg:
            self.publish(Snapshot(camera=camera, jpeg=jpeg))
        else:
            log.warning("alarm %s: camera %s gave no snapshot", alarm.alarm_id, camera)

    # -- restart -----------------------------------------------------------------------
    def load_interrupted(self) -> ActiveAlarm | None:
        """The alarm the state file says was active when the daemon last stopped."""
        data = self.store.load()
        if not data:
            return None
        try:
            return ActiveAlarm.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring a damaged %s: %s", self.store.path, exc)
            return None

    def recovered(self, alarm: ActiveAlarm) -> None:
        """Report an alarm a restart interrupted, and protect its footage up to now."""
        log.warning("alarm %s (%s, since %s) was interrupted by a restart; outputs stay off",
                    alarm.alarm_id, alarm.kind, time.ctime(alarm.started))
        self.phase(alarm, "recovered", "restart")
        self.protect(alarm, time.time() + self.settings.post_s)

    # -- life cycle --------------------------------------------------------------------
    def drain(self, timeout: float = 2.0) -> bool:
        """Wait until the worker has done what is queued."""
        done = threading.Event()
        self._jobs.put(done.set)
        return done.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Stop the worker after its queue (waiting at most `timeout`)."""
        self._jobs.put(None)
        self._worker.join(max(0.0, timeout))
