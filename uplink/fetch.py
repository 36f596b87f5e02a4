"""Footage on request: export a recorded range and PUT it to the URL the command gave.

`Fetcher.submit(job_id, args)` checks a `fetch` command at once (camera, range, footage,
URL) so that the reply says what is wrong; an accepted job protects its range from
rotation (`protect`) and joins a bounded queue stored in a JSON file (written atomically,
mode 600: a presigned URL is a credential for its life). Alarm clips (`add_alarm_clip`)
join the same queue, unbounded by `queue_max`, due once their post-roll is recorded, and
retried until they succeed. `run()` works the queue one try at a time: export by stream
copy (the recorder's export path, through the `export` callback), one upload try
(`uplink.upload.put_file`); a try that may be repeated puts the job behind the others,
due after a backoff with full jitter (`support.backoff`), so an unreachable clip server
does not hold a fetch to a working one. Done or failed, the range is released and the
job forgotten. After a restart the stored queue is worked again, each job from its
export (a clip left in the spool is not trusted).

A job is reported `done` only after the server answered 2xx to the whole body; anything
else ends as `failed` with the reason. Progress and result go to `on_event(phase, job,
fields)`: phases `queued`, `started`, `progress`, `retrying`, `done`, `failed`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from support.backoff import Backoff
from support.files import atomic_write
from uplink.bandwidth import Bandwidth, Pacer
from uplink.targets import Refused, Target, public
from uplink.upload import Stopped, UploadError, put_file

log = logging.getLogger(__name__)

FUTURE_SLACK_S = 60.0  # an `end` this far past the node's clock is still accepted (clipped)


class ExportFailed(Exception):
    """The range could not be exported (no footage, ffmpeg failed)."""


@dataclass
class Job:
    """One accepted `fetch`."""

    id: str
    camera: str
    start: float
    end: float
    url: str
    created: float = field(default_factory=time.time)
    tries: int = 0  # upload tries so far, over restarts too
    kind: str = "fetch"  # fetch (a command) | alarm (an alarm's clip, automatic)
    not_before: float = 0.0  # not tried before this (post-roll still recording, backoff)
    max_tries: int | None = None  # None: the Fetcher's `attempts`; 0: until it works
    token: bool = False  # send the configured bearer token (alarm clips)

    @property
    def protect_id(self) -> str:
        return f"{self.kind}-{self.id}"

    def summary(self) -> dict[str, Any]:
        """What events and replies show of the job (never the URL's query)."""
        return {"job": self.id, "camera": self.camera, "start": self.start, "end": self.end,
                "to": public(self.url)}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Fetcher:
    """The queue of `fetch` jobs and the worker that uploads them one at a time."""

    def __init__(self, queue_file: Path, spool: Path, *, bandwidth: Bandwidth,
                 cameras: Callable[[], list[str]],
                 footage: Callable[[str, float, float], float],
                 export: Callable[[str, float, float, Path], None],
                 protect: Callable[[str, str, float, float], None],
                 release: Callable[[str], None],
                 check_url: Callable[[str], Target],
                 check_config_url: Callable[[str], Target] | None = None,
                 on_event: Callable[[str, Job, dict[str, Any]], None],
                 queue_max: int = 8, max_range_s: float = 3600.0, attempts: int = 5,
                 stall_s: float = 30.0, retry_min_s: float = 2.0,
                 retry_max_s: float = 120.0, token: str | None = None) -> None:
        self.queue_file = queue_file
        self.spool = spool
        self.bandwidth = bandwidth
        self.cameras = cameras
        self.footage = footage
        self.export = export
        self.protect = protect
        self.release = release
        self.check_url = check_url  # URLs from commands
        self.check_config_url = check_config_url or check_url  # URLs from the config
        self.on_event = on_event
        self.queue_max = queue_max
        self.max_range_s = max_range_s
        self.attempts = attempts
        self.stall_s = stall_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = max(retry_max_s, retry_min_s)
        self.token = token  # bearer token for alarm clip uploads
        self._exported: set[str] = set()  # jobs whose clip is in the spool (this process)
        for stale in spool.glob("*.mp4") if spool.is_dir() else ():  # not trusted: redone
            stale.unlink(missing_ok=True)
        self._lock = threading.Condition()
        self.jobs: list[Job] = self._load()  # in order; the first due one runs next
        self.running: Job | None = None
        self.progress: dict[str, Any] = {}
        self.bytes_sent = 0
        self.done = 0
        self.failed = 0
        self.last_error = ""

    # -- commands -------------------------------------------------------------------------
    def submit(self, job_id: str, args: dict[str, Any]) -> tuple[bool, str, dict[str, Any]]:
        """Check and queue one `fetch`; (ok, message, data) for the reply."""
        camera, start, end, url = (args.get(k) for k in ("camera", "start", "end", "upload_url"))
        if not isinstance(camera, str) or camera not in self.cameras():
            return False, f"unknown camera {camera!r} (cameras: {', '.join(self.cameras())})", {}
        if not (_number(start) and _number(end)):
            return False, "`start` and `end` must be Unix seconds", {}
        now = time.time()
        if end <= start:
            return False, "`end` must be after `start`", {}
        if end - start > self.max_range_s:
            return False, (f"the range is {end - start:.0f} s; at most {self.max_range_s:.0f} s "
                           "per fetch (send several)"), {}
        if start >= now or end > now + FUTURE_SLACK_S:
            return False, "the range is in the future: only recorded footage can be fetched", {}
        end = min(end, now)
        if not isinstance(url, str):
            return False, "`upload_url` must be a string", {}
        try:
            self.check_url(url)
        except Refused as exc:
            return False, str(exc), {}
        seconds = self.footage(camera, start, end)
        if seconds <= 0:
            return False, (f"no footage of {camera} from {_show(start)} to {_show(end)}: "
                           "nothing to upload"), {}
        job = Job(job_id, camera, float(start), float(end), url)
        with self._lock:
            waiting = max(0, len(self.jobs) - 1)  # jobs[0] is the running (or next) one
            if waiting >= self.queue_max:
                return False, (f"upload queue full ({waiting} waiting behind "
                               f"{self.jobs[0].id}); try later"), {}
            try:
                self.protect(job.protect_id, job.camera, job.start, job.end)
            except Exception as exc:
                return False, f"cannot protect the range from rotation: {exc}", {}
            self.jobs.append(job)
            try:
                self._save()
            except OSError as exc:
                self.jobs.remove(job)
                self._release(job)
                return False, f"cannot store the upload queue: {exc}", {}
            position = len(self.jobs)
            ahead = self.jobs[0].id if position > 1 else ""
            self._lock.notify_all()
        data = {**job.summary(), "position": position, "footage_s": round(seconds, 1)}
        self.on_event("queued", job, {"position": position})
        waiting_for = ""
        if self.bandwidth.upload_kbps() == 0:
            waiting_for = (f"; waiting for bandwidth: live video takes the whole cap "
                           f"({self.bandwidth.cap_kbps} kbps)")
        if ahead:
            return True, f"queued behind {ahead} (position {position}){waiting_for}", data
        return True, f"uploading {seconds:.0f} s of {camera}{waiting_for}", data

    def add_alarm_clip(self, job: Job) -> bool:
        """Queue an alarm's clip (not bounded by `queue_max`: an alarm is never refused;
        bounded by the alarms a node can have). False if already queued (a restart)."""
        with self._lock:
            if any(j.id == job.id for j in self.jobs):
                return False
            try:
                self.protect(job.protect_id, job.camera, job.start, job.end)
            except Exception as exc:  # the recorder protects alarm ranges itself too
                log.warning("uplink: alarm clip %s not protected: %s", job.id, exc)
            self.jobs.append(job)
            self._save_quietly()
            self._lock.notify_all()
        self.on_event("queued", job, {"position": len(self.jobs)})
        return True

    # -- the worker -----------------------------------------------------------------------
    def run(self, stop: threading.Event, beat: Callable[[], None] = lambda: None) -> None:
        """Work the queue until `stop`: one try of the first job that is due, then the next.
        A try that may be repeated puts its job behind the others, due after a backoff."""
        while not stop.is_set():
            beat()
            with self._lock:
                now = time.time()
                job = next((j for j in self.jobs if j.not_before <= now), None)
                if job is None:
                    due = min((j.not_before for j in self.jobs), default=now + 1.0)
                    self._lock.wait(min(1.0, max(0.05, due - now)))
                    continue
                self.running = job
            try:
                outcome = self._try(job, stop, beat)
            except Exception as exc:  # a bug must not wedge the queue on one job
                log.exception("uplink: upload %s crashed", job.id)
                outcome = self._fail(job, f"internal error: {exc!r}")
            with self._lock:
                self.running = None
                self.progress = {}
                if outcome == "ended":
                    with contextlib.suppress(ValueError):
                        self.jobs.remove(job)
                    (self.spool / f"{job.id}.mp4").unlink(missing_ok=True)
                    self._exported.discard(job.id)
                elif outcome == "retry" and job in self.jobs:
                    self.jobs.remove(job)
                    self.jobs.append(job)
                self._save_quietly()

    def _try(self, job: Job, stop: threading.Event, beat: Callable[[], None]) -> str:
        """One export (if not done yet in this process) and one upload try of `job`:
        'ended' (done or failed, reported), 'retry' (due again later) or 'stopped'."""
        self.spool.mkdir(parents=True, exist_ok=True)
        clip = self.spool / f"{job.id}.mp4"
        if job.id not in self._exported:
            self.on_event("started", job, {})
            try:
                self.export(job.camera, job.start, job.end, clip)
            except ExportFailed as exc:
                return self._fail(job, f"export failed: {exc}")
            self._exported.add(job.id)
        size = clip.stat().st_size
        job.tries += 1
        self.progress = {}
        self._save_quietly()
        marks = [25, 50, 75]

        def progress(sent: int) -> None:
            self.progress = {"job": job.id, "sent": sent, "size": size}
            beat()
            if marks and sent * 100 >= marks[0] * size:
                self.on_event("progress", job, {"percent": marks.pop(0), "sent": sent,
                                                "size": size})
        try:
            check = self.check_url if job.kind == "fetch" else self.check_config_url
            target = check(job.url)  # resolved again: DNS may have moved
            headers = {"Authorization": f"Bearer {self.token}"} if job.token and self.token \
                else {}
            status = put_file(target, clip, pacer=Pacer(self.bandwidth), stall_s=self.stall_s,
                              on_progress=progress, stop=stop, headers=headers)
        except Stopped:
            job.tries -= 1
            return "stopped"
        except Refused as exc:
            return self._fail(job, str(exc))
        except UploadError as exc:
            self.bytes_sent += self.progress.get("sent", 0)
            if not exc.retry:
                return self._fail(job, str(exc))
            limit = self.attempts if job.max_tries is None else job.max_tries
            if limit and job.tries >= limit:
                return self._fail(job, f"{exc} (gave up after {job.tries} tries)")
            backoff = Backoff(self.retry_min_s, self.retry_max_s, min_s=self.retry_min_s / 2)
            backoff.attempts = min(job.tries - 1, 64)
            delay = backoff.next_delay()
            job.not_before = time.time() + delay
            self.last_error = str(exc)
            self.on_event("retrying", job, {"reason": str(exc), "try": job.tries,
                                            "in_s": round(delay, 1)})
            return "retry"
        self.bytes_sent += size
        self.done += 1
        self._release(job)
        self.on_event("done", job, {"bytes": size, "status": status, "tries": job.tries})
        return "ended"

    def _fail(self, job: Job, reason: str) -> str:
        self.failed += 1
        self.last_error = reason
        log.warning("uplink: upload %s failed: %s", job.id, reason)
        self._release(job)
        self.on_event("failed", job, {"reason": reason, "tries": job.tries})
        return "ended"

    def _release(self, job: Job) -> None:
        try:
            self.release(job.protect_id)
        except Exception as exc:  # the range stays protected until the recorder drops it
            log.warning("uplink: range of fetch %s not released: %s", job.id, exc)

    # -- the stored queue -----------------------------------------------------------------
    def _load(self) -> list[Job]:
        try:
            docs = json.loads(self.queue_file.read_text())
            return [Job(**doc) for doc in docs]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError) as exc:
            broken = self.queue_file.with_name(
                f"{self.queue_file.name}.corrupt-{int(time.time())}")
            log.error("uplink: upload queue %s unreadable (%s); moved to %s", self.queue_file,
                      exc, broken)
            with contextlib.suppress(OSError):
                self.queue_file.rename(broken)
            return []

    def _save(self) -> None:
        self.queue_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.queue_file, json.dumps([asdict(j) for j in self.jobs]), mode=0o600)

    def _save_quietly(self) -> None:
        try:
            self._save()
        except OSError as exc:  # the queue in memory goes on; a restart may repeat a job
            self.last_error = f"upload queue not stored: {exc}"
            log.error("uplink: %s", self.last_error)

    def health(self) -> dict[str, Any]:
        with self._lock:
            depth = len(self.jobs)
        return {"queue": depth, "running": self.running.id if self.running else None,
                "progress": dict(self.progress), "done": self.done, "failed": self.failed,
                "bytes": self.bytes_sent}


def _show(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
