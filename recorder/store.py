"""The recordings store: segment files under ``<root>/<camera>/<YYYY-MM-DD>/<HH>/`` (UTC)
and their SQLite index in ``<root>/index.sqlite3``.

Invariants (after `open`, which recovers): every segment row has its file; every video
file has exactly one row, or a garbage row, or sits in a camera's ``.incoming``
directory where ffmpeg is writing it.

Write order: ffmpeg closes a segment in ``.incoming``; the store fsyncs it, renames it into
its hour directory, fsyncs both directories, then inserts the row. Delete order: rows
become garbage rows (one transaction), files are unlinked, directories fsynced, garbage
rows deleted. A crash anywhere leaves either an orphan file (probed and indexed if it
plays, else removed) or a row without its file (dropped) for `recover` to settle.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from recorder import probe
from recorder.export import sweep_pins
from recorder.index import Clip, Index, IndexError_, Segment
from support.files import atomic_write

log = logging.getLogger(__name__)

INCOMING = ".incoming"
MARKER = ".ronda-store"
#: A file of zeros the store keeps so that a disk filled to the last byte (by ffmpeg, or by
#: something else) can still be reopened: SQLite needs room for its -wal and -shm files
#: before a single segment can be deleted. Deleted on such a reopen, re-created after.
RESERVE = ".reserve"
#: 2024-01-01 UTC. A wall clock before this is not set (a Pi has no RTC; until NTP
#: syncs it counts from 1970): segments stamped earlier have no known age.
SANE_TIME = 1_704_067_200.0
#: Prefix of the remuxed copy `_playable` writes next to a damaged file, before it
#: replaces the file: a leftover after a crash is a duplicate, never a segment.
SALVAGE = ".salvage-"
SUFFIX = ".mp4"
_STAMP = re.compile(r"-(\d{8}T\d{6})\.(\d{3})Z(?:-\d+)?\.mp4$")


class StorageFault(Exception):
    """The store cannot be written: `reason` is disk-full, read-only, io-error, missing or
    index-error; `detail` says what failed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def classify(exc: BaseException) -> str:
    """The storage fault reason an exception stands for."""
    if isinstance(exc, StorageFault):
        return exc.reason
    if isinstance(exc, OSError):
        return {errno.ENOSPC: "disk-full", errno.EDQUOT: "disk-full",
                errno.EROFS: "read-only", errno.EIO: "io-error",
                errno.ENOENT: "missing", errno.ENODEV: "missing", errno.ENXIO: "missing",
                errno.ESTALE: "missing", errno.ENOTCONN: "missing"}.get(exc.errno or 0,
                                                                        "io-error")
    if isinstance(exc, sqlite3.Error):
        return classify_text(str(exc)) or "index-error"
    return "io-error"


def classify_text(text: str) -> str | None:
    """The fault reason named in an error message (ffmpeg's stderr, SQLite's errors)."""
    low = text.lower()
    for needle, reason in (("no space left", "disk-full"), ("disk is full", "disk-full"),
                           ("read-only file system", "read-only"), ("readonly", "read-only"),
                           ("input/output error", "io-error"), ("disk i/o error", "io-error"),
                           ("no such device", "missing")):
        if needle in low:
            return reason
    return None


def fsync_path(path: Path, directory: bool = False) -> None:
    """fsync a file or a directory (for a rename or unlink to be durable)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stamp(ts: float) -> str:
    """UTC time as used in file names: 20261128T013502.250Z."""
    dt = datetime.fromtimestamp(ts, timezone.utc)
    return dt.strftime("%Y%m%dT%H%M%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_stamp(name: str) -> float | None:
    """The start time in a segment file name made by `segment_name`, or None."""
    found = _STAMP.search(name)
    if found is None:
        return None
    try:
        dt = datetime.strptime(found[1], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return dt.timestamp() + int(found[2]) / 1000


def segment_name(camera: str, start: float) -> str:
    """Relative path of a segment: cam/2026-11-28/01/cam-20261128T013502.250Z.mp4."""
    dt = datetime.fromtimestamp(start, timezone.utc)
    return f"{camera}/{dt:%Y-%m-%d}/{dt:%H}/{camera}-{stamp(start)}{SUFFIX}"


@dataclass
class Limits:
    """How much the store may hold."""

    quota: int
    camera_quota: dict[str, int] = field(default_factory=dict)
    event_share: float = 0.3
    max_age_s: float | None = None
    min_free: int = 0
    #: Per-camera age limits overriding `max_age_s`.
    camera_max_age_s: dict[str, float] = field(default_factory=dict)
    #: Footage per camera (seconds, the newest) that the filesystem floor never deletes:
    #: when something else fills the disk, recording stops rather than erase the past.
    keep_recent_s: float = 6 * 3600.0


class Store:
    """Segment files plus index, with retention. Thread-safe (one lock)."""

    #: Size of the reserve file (room for the index's -wal and -shm files on reopen).
    reserve_bytes = 512 * 1024

    def __init__(self, root: Path, limits: Limits, *, require_mount: bool = False) -> None:
        self.root = Path(root)
        self.limits = limits
        self.require_mount = require_mount
        self.lock = threading.RLock()
        self.index: Index | None = None
        self.identity: str | None = None
        self.used: dict[str, int] = {}
        self.last_recovery: dict[str, int] = {}
        #: Called as long recovery work goes on (each file, and about every second while
        #: one is checked): the recorder beats its supervisor's stall detector with it.
        self.on_progress: Callable[[], None] | None = None
        #: Called with (clip, bytes it covered) when the event share takes a clip's
        #: protection away: the recorder warns about it (log, event, health).
        self.on_release: Callable[[Clip, int], None] | None = None

    # -- opening, checking ------------------------------------------------------------
    def check(self, *, same_disk: bool = True) -> None:
        """Raise StorageFault unless the store's filesystem is there and writable, and
        (`same_disk`) still the store that was opened: a marker with another identity
        means another disk was mounted over (or swapped under) the open store, whose
        index is then hidden; the fault makes the recorder let go and reopen."""
        if not self.root.is_dir():
            raise StorageFault("missing", f"{self.root} is not there")
        if self.require_mount and os.stat(self.root).st_dev == os.stat("/").st_dev:
            raise StorageFault("missing", f"{self.root} is on the root filesystem "
                                          "(recordings disk not mounted)")
        marker = self.root / MARKER
        if self.identity is not None:
            try:
                found = marker.read_text().strip()
            except OSError as exc:
                raise StorageFault("missing", f"{marker}: {exc.strerror}") from None
            if found != self.identity and same_disk:
                raise StorageFault("missing", f"recordings disk changed under the open "
                                              f"store ({self.identity} -> {found})")
        st = os.statvfs(self.root)
        if st.f_flag & os.ST_RDONLY:
            raise StorageFault("read-only", f"{self.root} is mounted read-only")

    def probe_write(self) -> None:
        """Write, fsync and remove a small file: raises OSError (ENOSPC, EROFS, EIO...)
        if the disk cannot take writes now. Used only when something failed, to tell a
        storage fault from a camera fault, so it costs the flash nothing day to day."""
        self.check()
        probe_path = self.root / ".write-probe"
        try:
            fd = os.open(probe_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, b"\0" * 4096)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            with contextlib.suppress(OSError):
                probe_path.unlink()

    def open(self) -> dict[str, int]:
        """Check, open the index and recover; returns the recovery counts.

        A full disk is reopened too: if the index cannot be opened (SQLite needs room for
        its -wal and -shm files), the reserve file is given up and the open retried; then
        the oldest footage goes until the floor and the reserve fit again."""
        with self.lock:
            self.close()
            if self.identity is None:
                self.root.mkdir(parents=True, exist_ok=True)
            self.check(same_disk=False)  # (re)opening takes whichever store is there
            marker = self.root / MARKER
            try:
                if not marker.exists():
                    atomic_write(marker, uuid.uuid4().hex + "\n")
                found = marker.read_text().strip()
                if self.identity is not None and found != self.identity:
                    log.warning("recordings disk changed (%s -> %s): opening the new one",
                                self.identity, found)
                self.identity = found
                self.index = self._open_index()
                if not (self.root / RESERVE).exists():
                    # The reserve went (or never was): room for it and the floor first,
                    # before recovery writes anything.
                    self._shrink(lambda: self.limits.min_free + self.reserve_bytes
                                 - self.free_bytes(), kinds=(False,),
                                 keep_recent_s=self.limits.keep_recent_s)
                self.last_recovery = self.recover()
                self.used = self.index.usage()
                self._keep_reserve()
            except (OSError, sqlite3.Error, IndexError_) as exc:
                self.close()
                raise StorageFault(self._open_fault(exc), str(exc)) from exc
            return self.last_recovery

    def _open_index(self) -> Index:
        try:
            return Index(self.root / Index.FILENAME)
        except (OSError, sqlite3.Error):
            reserve = self.root / RESERVE
            if not reserve.exists() or self.free_bytes() >= self.reserve_bytes:
                raise
            log.warning("recordings index cannot be opened (%d bytes free): giving up the "
                        "reserve file", self.free_bytes())
            reserve.unlink()
            fsync_path(self.root, directory=True)
            return Index(self.root / Index.FILENAME)

    def _keep_reserve(self) -> None:
        """Create the reserve file if it is missing (best effort: not on a full disk)."""
        reserve = self.root / RESERVE
        if reserve.exists():
            return
        try:
            atomic_write(reserve, bytes(self.reserve_bytes))
        except OSError as exc:
            log.warning("no room for the reserve file: %s", exc)

    def _open_fault(self, exc: BaseException) -> str:
        """The fault an open failed with; SQLite says "disk I/O error" when it cannot
        create its -wal/-shm files on a full disk, so the free space decides."""
        reason = classify(exc)
        if reason in ("io-error", "index-error"):
            with contextlib.suppress(OSError):
                if self.free_bytes() < self.reserve_bytes:
                    return "disk-full"
        return reason

    def close(self) -> None:
        with self.lock:
            if self.index is not None:
                with contextlib.suppress(sqlite3.Error):
                    self.index.close()
                self.index = None

    @property
    def is_open(self) -> bool:
        return self.index is not None

    def _index(self) -> Index:
        if self.index is None:
            raise StorageFault("index-error", "store is not open")
        return self.index

    def incoming(self, camera: str) -> Path:
        """Where ffmpeg writes `camera`'s open segment."""
        return self.root / camera / INCOMING

    # -- adding -----------------------------------------------------------------------
    def commit(self, camera: str, staged: Path, start: float, end: float,
               recovered: bool = False) -> Segment:
        """Move a closed segment from `.incoming` into place and index it (durably)."""
        with self.lock:
            index = self._index()
            size = staged.stat().st_size
            fsync_path(staged)
            rel = segment_name(camera, start)
            dest = self.root / rel
            n = 1
            while dest.exists() or rel in self._pending_names(index, rel):
                rel = segment_name(camera, start).removesuffix(SUFFIX) + f"-{n}{SUFFIX}"
                dest = self.root / rel
                n += 1
            self._mkdirs(dest.parent)
            os.rename(staged, dest)
            fsync_path(dest.parent, directory=True)
            fsync_path(staged.parent, directory=True)
            segment = index.add(camera, rel, start, end, size, recovered)
            self.used[camera] = self.used.get(camera, 0) + size
            return segment

    @staticmethod
    def _pending_names(index: Index, rel: str) -> set[str]:
        row = index.db.execute("SELECT path FROM garbage WHERE path = ?", (rel,)).fetchone()
        return {row[0]} if row else set()

    def _mkdirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for d in reversed(missing):
            d.mkdir(exist_ok=True)
            fsync_path(d.parent, directory=True)

    # -- deleting ---------------------------------------------------------------------
    def delete(self, segments: Iterable[Segment]) -> int:
        """Garbage rows first, then unlink, fsync the directories, drop the garbage rows."""
        segments = list(segments)
        if not segments:
            return 0
        with self.lock:
            index = self._index()
            index.to_garbage(segments)
            for s in segments:
                self.used[s.camera] = self.used.get(s.camera, 0) - s.bytes
            self._unlink([s.path for s in segments])
            index.collect(s.path for s in segments)
        return sum(s.bytes for s in segments)

    def _unlink(self, rels: list[str]) -> None:
        dirs: set[Path] = set()
        for rel in rels:
            path = self.root / rel
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            dirs.add(path.parent)
        for d in dirs:
            if d.exists():
                fsync_path(d, directory=True)
            for empty in (d, d.parent):  # hour, then day directory
                try:
                    empty.rmdir()
                except OSError:
                    break

    # -- retention --------------------------------------------------------------------
    def total_used(self) -> int:
        return sum(self.used.values())

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def make_space(self, headroom: dict[str, int] | None = None,
                   now: float | None = None) -> int:
        """Apply max age, the event share, per-camera and total quotas and the
        filesystem floor, keeping room for the next segment of every camera
        (`headroom`, bytes per camera). Returns bytes deleted."""
        headroom = headroom or {}
        reserve = sum(headroom.values())
        lim = self.limits
        now = time.time() if now is None else now
        freed = 0
        with self.lock:
            index = self._index()
            if (lim.max_age_s or lim.camera_max_age_s) and now > SANE_TIME:
                # Footage stamped before SANE_TIME was recorded before the clock was set
                # (no RTC, no NTP yet): its age is unknown, so max age leaves it alone and
                # the quotas (recording order) take it in turn.
                for camera in index.cameras():
                    age = lim.camera_max_age_s.get(camera, lim.max_age_s)
                    while age and (victims := index.oldest(
                            camera=camera, protected=None, before=now - age,
                            since=SANE_TIME)):
                        freed += self.delete(victims)
            share = lim.event_share * lim.quota
            clips = index.clips()
            while clips and index.protected_bytes() > share:
                clip = clips.pop(0)
                covered = index.clip_bytes(clip)
                index.release(clip.event_id)
                self._released(clip, covered)
            for camera, quota in lim.camera_quota.items():
                # A camera's quota bounds its ring buffer; its protected footage counts
                # against the event share (of the total quota) instead, so the camera
                # quota never deletes a protected segment (see docs/storage.md).
                kept = index.protected_bytes(camera)
                freed += self._shrink(lambda c=camera, q=quota, p=kept: self.used.get(c, 0)
                                      - p + headroom.get(c, 0) - q, camera,
                                      kinds=(False,))
            freed += self._shrink(lambda: self.total_used() + reserve - lim.quota)
            if lim.min_free:
                # The floor deletes old, unprotected footage only: the newest
                # `keep_recent_s` of every camera and the clips stay, and when that is not
                # enough recording stops (disk-full) rather than erase them.
                freed += self._shrink(lambda: lim.min_free + reserve - self.free_bytes(),
                                      kinds=(False,), keep_recent_s=lim.keep_recent_s)
                short = lim.min_free + reserve - self.free_bytes()
                if short > 0:
                    raise StorageFault("disk-full", f"something else uses "
                                       f"{self.other_bytes() / 1e9:.1f} GB: "
                                       f"{self.free_bytes()} bytes free, floor "
                                       f"{lim.min_free} + {reserve} for open segments; "
                                       "recent footage and clips kept")
            self._forget_old_clips(index)
        return freed

    def other_bytes(self) -> int:
        """Bytes used on the store's filesystem by something other than its footage."""
        st = os.statvfs(self.root)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        return max(used - self.total_used(), 0)

    def _released(self, clip: Clip, covered: int) -> None:
        if self.on_release is None:
            log.warning("clip %s released (%d bytes): beyond the event share", clip.event_id,
                        covered)
            return
        try:
            self.on_release(clip, covered)
        except Exception:
            log.exception("release callback failed")

    def _shrink(self, excess, camera: str | None = None,
                kinds: tuple[bool, ...] = (False, True), keep_recent_s: float = 0.0) -> int:
        """Delete oldest footage while `excess()` is positive: unprotected first, then
        protected (unless `kinds` is (False,)), never a camera's newest `keep_recent_s`."""
        freed = 0
        index = self._index()
        while excess() > 0:
            need = excess()
            victims: list[Segment] = []
            for protected in kinds:
                for s in index.oldest(camera=camera, protected=protected, limit=256,
                                      keep_recent_s=keep_recent_s):
                    victims.append(s)
                    need -= s.bytes
                    if need <= 0:
                        break
                if victims:
                    break
            if not victims:
                break
            freed += self.delete(victims)
        return freed

    def _forget_old_clips(self, index: Index) -> None:
        oldest = index.oldest_start()
        if oldest is None:
            return
        for clip in index.clips():
            if clip.end < oldest:
                index.release(clip.event_id)

    def protect(self, event_id: str, start: float, end: float, cameras: Iterable[str]) -> None:
        with self.lock:
            self._index().protect(event_id, start, end, cameras)

    def release(self, event_id: str) -> None:
        """Stop protecting `event_id`'s range (rotation may take it again)."""
        with self.lock:
            self._index().release(event_id)

    # -- recovery ---------------------------------------------------------------------
    def recover(self, cameras: Iterable[str] | None = None) -> dict[str, int]:
        """Settle what a crash left: garbage rows, rows without files, orphan files."""
        counts = {"garbage": 0, "dropped": 0, "recovered": 0, "removed": 0}
        index = self._index()
        garbage = index.garbage()
        self._unlink(garbage)
        index.collect(garbage)
        counts["garbage"] = len(garbage)
        rows = index.segments()
        gone = [s.id for s in rows if not (self.root / s.path).is_file()]
        counts["dropped"] = index.forget(gone)
        sweep_pins(self.root)  # pins of an export that crashed
        camera_dirs = sorted(p for p in self.root.iterdir() if p.is_dir()
                             and not p.name.startswith(".")
                             and (cameras is None or p.name in cameras))
        for camera_dir in camera_dirs:
            self._progress()
            swept = self.sweep_incoming(camera_dir.name)
            counts["recovered"] += swept["recovered"]
            counts["removed"] += swept["removed"]
        known = index.paths()
        on_disk = set()
        for camera_dir in camera_dirs:
            for path in camera_dir.glob(f"*/*/*{SUFFIX}"):
                if path.name.startswith(SALVAGE):  # a crash mid-salvage: a copy, not footage
                    path.unlink(missing_ok=True)
                elif not path.name.startswith("."):
                    on_disk.add(str(path.relative_to(self.root)))
        for rel in sorted(on_disk - known):
            self._progress()
            path = self.root / rel
            camera = rel.split("/", 1)[0]
            start = parse_stamp(path.name)
            length = self._playable(path) if start is not None else None
            if length is None or start is None:
                self._unlink([rel])
                counts["removed"] += 1
                continue
            fsync_path(path)
            index.add(camera, rel, start, start + length, path.stat().st_size, recovered=True)
            counts["recovered"] += 1
        if any(counts.values()):
            log.info("recordings recovery: %s", counts)
        return counts

    def sweep_incoming(self, camera: str, keep: str | None = None) -> dict[str, int]:
        """Index the playable leftovers of a dead ffmpeg in `.incoming`, remove the rest.
        Files whose name starts with `keep` (the running ffmpeg's) are left alone."""
        counts = {"recovered": 0, "removed": 0}
        incoming = self.incoming(camera)
        if not incoming.is_dir():
            return counts
        for path in sorted(incoming.iterdir()):
            if keep and path.name.startswith(keep):
                continue
            if path.name.startswith(SALVAGE):
                # A crash mid-salvage left the remuxed copy: the original is still there
                # (the copy replaces it atomically) and is salvaged again.
                path.unlink(missing_ok=True)
                continue
            self._progress()
            length = self._playable(path) if path.suffix == SUFFIX else None
            if length is None or length <= 0:
                path.unlink(missing_ok=True)
                counts["removed"] += 1
                continue
            end = path.stat().st_mtime
            self.commit(camera, path, end - length, end, recovered=True)
            counts["recovered"] += 1
        if counts["removed"]:
            fsync_path(incoming, directory=True)
        return counts

    def _playable(self, path: Path) -> float | None:
        """Seconds of cleanly decodable video in an orphan file, or None. A file cut in
        the middle of a frame (disk full, power cut) is salvaged in place: its last,
        incomplete frame is dropped by a stream-copy remux.

        Only the end of the file is decoded (`probe.tail_decodes`): that is where a cut
        damages a fragmented MP4, and a full decode of a long or H.265 segment takes a
        Pi longer than any timeout. A check that still times out keeps the file: its
        packets were all there (`duration`), and deleting good footage is worse."""
        progress = self._progress
        length = probe.duration(path, progress=progress)
        if length is None or length <= 0:
            return None
        tail = probe.tail_decodes(path, length, progress=progress)
        if tail is None:
            log.warning("%s: end not checked in time; kept as it is", path.name)
            return length
        if tail:
            return length
        fixed = path.with_name(f"{SALVAGE}{path.name}")
        try:
            if not probe.salvage(path, fixed, progress=progress):
                return None
            fsync_path(fixed)
            os.replace(fixed, path)
            log.warning("%s: damaged tail dropped", path.name)
            return probe.duration(path, progress=progress)
        finally:
            fixed.unlink(missing_ok=True)

    def _progress(self) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress()
            except Exception:
                log.exception("progress callback failed")

    # -- figures ----------------------------------------------------------------------
    def figures(self) -> dict[str, object]:
        with self.lock:
            index = self._index()
            oldest = index.oldest_start()
            return {
                "bytes_used": self.total_used(),
                "bytes_by_camera": dict(self.used),
                "quota": self.limits.quota,
                "protected_bytes": index.protected_bytes(),
                "clips": len(index.clips()),
                "oldest_footage_h": round((time.time() - oldest) / 3600, 3) if oldest else None,
                "free_bytes": self.free_bytes(),
                "pinned_bytes": sweep_pins(self.root)["pinned_bytes"],
                "counters": index.counters(),
            }
