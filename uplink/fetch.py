"""Footage on request: export a recorded range and PUT it to the URL the command gave.

`Fetcher.submit(job_id, args)` checks a `fetch` command at once (camera, range, footage,
URL) so that the reply says what is wrong; an accepted job protects its range from
rotation (`protect`) and joins a bounded queue stored in a JSON file (written atomically,
mode 600: a presigned URL is a credential for its life). `run()` works the queue one job
at a time: export by stream copy (the recorder's export path, through the `export`
callback), upload with retries (`uplink.upload.put_file`, backoff with full jitter),
then release the range and forget the job. After a restart the stored queue is worked
again, the interrupted job from the start (the export file is not trusted).

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

    @property
    def protect_id(self) -> str:
        return f"fetch-{self.id}"

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
                 on_event: Callable[[str, Job, dict[str, Any]], None],
                 queue_max: int = 8, max_range_s: float = 3600.0, attempts: int = 5,
                 stall_s: float = 30.0, retry_min_s: float = 2.0,
                 retry_max_s: float = 120.0) -> None:
        self.queue_file = queue_file
        self.spool = spool
        self.bandwidth = bandwidth
        self.cameras = cameras
        self.footage = footage
        self.export = export
        self.protect = protect
        self.release = release
        self.check_url = check_url
        self.on_event = on_event
        self.queue_max = queue_max
        self.max_range_s = max_range_s
        self.attempts = attempts
        self.stall_s = stall_s
        self.retry_min_s = retry_min_s
        self.retry_max_s = max(retry_max_s, retry_min_s)
        self._lock = threading.Condition()
        self.jobs: list[Job] = self._load()  # jobs[0] is the running one when `running`
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
        if ahead:
            return True, f"queued behind {ahead} (position {position})", data
        return True, f"uploading {seconds:.0f} s of {camera}", data

    # -- the worker -----------------------------------------------------------------------
    def run(self, stop: threading.Event, beat: Callable[[], None] = lambda: None) -> None:
        """Work the queue until `stop`."""
        while not stop.is_set():
            beat()
            with self._lock:
                if not self.jobs:
                    self._lock.wait(1.0)
                    continue
                job = self.running = self.jobs[0]
            try:
                finished = self._work(job, stop, beat)
            except Exception as exc:  # a bug must not wedge the queue on one job
                log.exception("uplink: fetch %s crashed", job.id)
                finished = self._fail(job, f"internal error: {exc!r}")
            with self._lock:
                self.running = None
                self.progress = {}
                if finished:
                    with contextlib.suppress(ValueError):
                        self.jobs.remove(job)
                    self._save_quietly()

    def _work(self, job: Job, stop: threading.Event, beat: Callable[[], None]) -> bool:
        """Export and upload `job`; True when it ended (done or failed), False if stopped."""
        self.spool.mkdir(parents=True, exist_ok=True)
        clip = self.spool / f"{job.id}.mp4"
        self.on_event("started", job, {})
        try:
            try:
                self.export(job.camera, job.start, job.end, clip)
            except ExportFailed as exc:
                return self._fail(job, f"export failed: {exc}")
            size = clip.stat().st_size
            backoff = Backoff(self.retry_min_s, self.retry_max_s, min_s=self.retry_min_s / 2)
            pacer = Pacer(self.bandwidth)
            while True:
                job.tries += 1
                self.progress = {}
                self._save_quietly()
                marks = [25, 50, 75]

                def progress(sent: int, job: Job = job, size: int = size,
                             marks: list[int] = marks) -> None:
                    self.progress = {"job": job.id, "sent": sent, "size": size}
                    beat()
                    if marks and sent * 100 >= marks[0] * size:
                        self.on_event("progress", job, {"percent": marks.pop(0), "sent": sent,
                                                        "size": size})
                try:
                    target = self.check_url(job.url)  # resolved again: DNS may have moved
                    status = put_file(target, clip, pacer=pacer, stall_s=self.stall_s,
                                      on_progress=progress, stop=stop)
                except Refused as exc:
                    return self._fail(job, str(exc))
                except UploadError as exc:
                    self.bytes_sent += self.progress.get("sent", 0)
                    if not exc.retry:
                        return self._fail(job, str(exc))
                    if job.tries >= self.attempts:
                        return self._fail(job, f"{exc} (gave up after {job.tries} tries)")
                    delay = backoff.next_delay()
                    self.last_error = str(exc)
                    self.on_event("retrying", job, {"reason": str(exc), "try": job.tries,
                                                    "in_s": round(delay, 1)})
                    if stop.wait(delay):
                        return False
                    continue
                self.bytes_sent += size
                self.done += 1
                self._release(job)
                self.on_event("done", job, {"bytes": size, "status": status,
                                            "tries": job.tries})
                return True
        except Stopped:
            return False
        finally:
            clip.unlink(missing_ok=True)

    def _fail(self, job: Job, reason: str) -> bool:
        self.failed += 1
        self.last_error = reason
        log.warning("uplink: fetch %s failed: %s", job.id, reason)
        self._release(job)
        self.on_event("failed", job, {"reason": reason, "tries": job.tries})
        return True

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
