"""The store on its own: layout, retention policy, Moonfire-style deletion and recovery,
index schema versions. Real files, real SQLite, real ffprobe; no ffmpeg recording."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorder_testkit import assert_index_matches_disk, fill_store, rows

from recorder import probe
from recorder.index import MIGRATIONS, SCHEMA_VERSION, Index, IndexError_
from recorder.store import (
    INCOMING,
    Limits,
    StorageFault,
    Store,
    classify,
    classify_text,
    parse_stamp,
    segment_name,
)
from tests.waiting import wait_for

T0 = 1_795_000_000.0


def open_store(root: Path, **limits: object) -> Store:
    store = Store(root, Limits(**{"quota": 2**30, **limits}))  # type: ignore[arg-type]
    store.open()
    return store


def test_commit_layout_and_names(tmp_path: Path, segment_files: list[Path]) -> None:
    store = open_store(tmp_path / "rec")
    [seg] = fill_store(store, segment_files, "gate", [T0 + 0.25], tmp_path)
    assert seg.path == "gate/2026-11-18/11/gate-20261118T110640.250Z.mp4"
    assert seg.path == segment_name("gate", T0 + 0.25)
    assert parse_stamp(Path(seg.path).name) == pytest.approx(T0 + 0.25)
    assert not list((tmp_path / "rec" / "gate" / INCOMING).iterdir())
    # The same start twice (a restart within the millisecond) never overwrites.
    [again] = fill_store(store, segment_files, "gate", [T0 + 0.25], tmp_path)
    assert again.path != seg.path and parse_stamp(Path(again.path).name) == seg.start
    store.close()
    assert_index_matches_disk(tmp_path / "rec")


def test_quota_keeps_headroom_and_deletes_oldest_first(
        tmp_path: Path, segment_files: list[Path]) -> None:
    sizes = [p.stat().st_size for p in segment_files]
    quota = sum(sizes) + sum(sizes[:3])
    store = open_store(tmp_path / "rec", quota=quota)
    segs = fill_store(store, segment_files * 2, "gate", [T0 + i for i in range(20)], tmp_path)
    headroom = {"gate": max(sizes), "lane": max(sizes)}
    store.make_space(headroom)
    assert store.total_used() + sum(headroom.values()) <= quota
    kept = {r[2] for r in rows(tmp_path / "rec")}
    survivors = [s for s in segs if s.path in kept]
    assert survivors == segs[-len(survivors):], "must delete the oldest first"
    assert store.index is not None and store.index.counters()["garbage"] == 20 - len(survivors)
    store.close()
    assert_index_matches_disk(tmp_path / "rec")


def test_protected_clips_survive_and_event_share_releases_the_oldest(
        tmp_path: Path, segment_files: list[Path]) -> None:
    size = max(p.stat().st_size for p in segment_files)
    quota = 12 * size
    store = open_store(tmp_path / "rec", quota=quota, event_share=0.3)
    fill_store(store, segment_files, "gate", [T0 + i for i in range(3)], tmp_path)
    store.protect("old", T0 + 0.1, T0 + 0.9, ["gate"])  # 1 segment
    store.protect("new", T0 + 1.1, T0 + 1.9, [])  # 1 segment, every camera
    fill_store(store, segment_files, "gate", [T0 + 3 + i for i in range(30)], tmp_path)
    store.make_space({"gate": size})
    paths = [r[2] for r in rows(tmp_path / "rec")]
    assert segment_name("gate", T0) in paths and segment_name("gate", T0 + 1) in paths
    assert segment_name("gate", T0 + 2) not in paths
    assert store.total_used() + size <= quota

    # Protect more than 30 % of the quota: the oldest clip loses its protection.
    store.protect("big", T0 + 20, T0 + 33, ["gate"])
    store.make_space({"gate": size})
    assert store.index is not None
    assert {c.event_id for c in store.index.clips()} <= {"new", "big"}
    assert "old" not in {c.event_id for c in store.index.clips()}
    assert store.index.protected_bytes() <= 0.3 * quota
    store.close()


def test_released_clip_warns_in_log_event_and_health(
        tmp_path: Path, segment_files: list[Path], caplog: pytest.LogCaptureFixture) -> None:
    """A clip larger than the event share loses its protection loudly."""
    from recorder.recorder import Recorder

    size = max(p.stat().st_size for p in segment_files)
    events: list[tuple[str, str, dict]] = []
    rec = Recorder(tmp_path / "rec", {}, limits=Limits(quota=12 * size, event_share=0.3),
                   on_storage_state=lambda *e: events.append(e))
    rec.start()
    fill_store(rec.store, segment_files, "gate", [T0 + i for i in range(10)], tmp_path)
    rec.protect("panic-7", T0, T0 + 6, ["gate"])  # 6 segments: more than 30 % of 12
    with caplog.at_level("WARNING", logger="recorder.recorder"):
        rec.store.make_space({"gate": size})
    assert [(state, reason) for state, reason, _ in events] == [("ok", "clip-released")]
    detail = events[0][2]
    assert detail["event_id"] == "panic-7" and detail["cameras"] == ["gate"]
    assert detail["bytes"] >= 4 * min(p.stat().st_size for p in segment_files)
    assert any("panic-7" in r.getMessage() and "event_share" in r.getMessage()
               for r in caplog.records)
    assert rec.health()["released_clips"] == 1
    rec.stop()


def test_per_camera_quota_and_max_age(tmp_path: Path, segment_files: list[Path]) -> None:
    size = max(p.stat().st_size for p in segment_files)
    store = open_store(tmp_path / "rec", camera_quota={"lane": 4 * size}, max_age_s=3600)
    fill_store(store, segment_files, "lane", [T0 + i for i in range(10)], tmp_path)
    fill_store(store, segment_files, "gate", [T0 + i for i in range(10)], tmp_path)
    store.make_space({"lane": size, "gate": size}, now=T0 + 60)
    assert store.used["lane"] + size <= 4 * size
    assert len([r for r in rows(tmp_path / "rec") if r[1] == "gate"]) == 10
    store.protect("kept-too-long", T0, T0 + 100, [])
    store.make_space({}, now=T0 + 3600 + 100)  # max age applies to protected footage too
    assert rows(tmp_path / "rec") == []
    store.close()
    assert_index_matches_disk(tmp_path / "rec", allow_empty=True)  # all aged out, as checked


def test_per_camera_max_age_overrides_the_store_wide_one(
        tmp_path: Path, segment_files: list[Path]) -> None:
    store = open_store(tmp_path / "rec", max_age_s=3600, camera_max_age_s={"road": 2000})
    for camera in ("road", "yard"):
        fill_store(store, segment_files, camera, [T0 + i * 300 for i in range(10)], tmp_path)
    store.make_space({}, now=T0 + 4500)
    left = {c: [r[3] - T0 for r in rows(tmp_path / "rec") if r[1] == c] for c in ("road", "yard")}
    assert left == {"road": [2700.0], "yard": [300.0 * i for i in range(3, 10)]}
    store.close()


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounts need root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_filesystem_floor_keeps_recent_footage_and_clips(
        tmpfs: Path, segment_files: list[Path]) -> None:
    """The floor deletes old footage for space, but when something else fills the disk it
    keeps each camera's newest `keep_recent_s` and every clip, and stops (disk-full, naming
    what the other thing uses) instead of erasing them."""
    store = open_store(tmpfs / "rec", min_free=int(2.5 * 2**20), keep_recent_s=20)
    fill_store(store, segment_files * 8, "gate", [T0 + i for i in range(80)], tmpfs)
    store.protect("panic", T0 + 2.5, T0 + 3.5, [])  # an old clip: segments 2 and 3
    store.make_space({"gate": 50_000})
    assert store.free_bytes() >= 2.5 * 2**20 + 50_000
    assert rows(tmpfs / "rec"), "deleted more than needed"
    # Someone else fills the disk: the floor deletes what it may, then gives up loudly.
    with (tmpfs / "filler").open("wb") as fh:
        fh.write(b"\0" * (store.free_bytes() - 100_000))
    with pytest.raises(StorageFault) as fault:
        store.make_space({"gate": 50_000})
    assert fault.value.reason == "disk-full"
    assert "something else uses" in fault.value.detail
    kept = [r[3] - T0 for r in rows(tmpfs / "rec")]
    assert kept[:2] == [2.0, 3.0], "the clip's segments went"
    assert kept[2:] == [float(i) for i in range(60, 80)], "not exactly the newest 20 s kept"
    store.close()


def test_recorder_stays_degraded_while_something_else_fills_the_disk(
        tmpfs: Path, segment_files: list[Path]) -> None:
    from recorder.recorder import Recorder

    events: list[tuple[str, str, dict]] = []
    rec = Recorder(tmpfs / "rec", {}, limits=Limits(quota=2**30, min_free=2**20,
                                                    keep_recent_s=3600),
                   on_storage_state=lambda *e: events.append(e), check_every_s=0.0,
                   retry_min_s=0.05, retry_cap_s=0.1)
    rec.start()
    fill_store(rec.store, segment_files, "gate", [T0 + i for i in range(20)], tmpfs)
    filler = tmpfs / "grown.log"
    with filler.open("wb") as fh:
        fh.write(b"\0" * (rec.store.free_bytes() - 2**19))
    for _ in range(5):  # the periodic check, then retries to reopen: all still too full
        rec.poll()
        time.sleep(0.12)  # on purpose: past the retry delay, so each poll retries
    assert rec.state == "degraded" and rec.reason == "disk-full"
    assert "something else uses" in rec.summary(), rec.summary()
    assert [e[:2] for e in events] == [("degraded", "disk-full")]
    assert "something else uses" in events[0][2]["detail"]
    assert len(rows(tmpfs / "rec")) == 20, "recent footage erased"
    filler.unlink()  # the log is rotated away: recording resumes by itself
    wait_for(lambda: (rec.poll(), rec.state == "ok")[1], 10, "recording to resume",
             interval=0.12)
    assert events[-1][:2] == ("ok", "")
    rec.stop()


def test_recovery_settles_every_kind_of_leftover(tmp_path: Path,
                                                 segment_files: list[Path]) -> None:
    root = tmp_path / "rec"
    store = open_store(root)
    segs = fill_store(store, segment_files, "gate", [T0 + i for i in range(6)], tmp_path)
    assert store.index is not None
    # 1. crash after the garbage transaction, before the unlink
    store.index.to_garbage(segs[:2])
    # 2. a row whose file vanished
    (root / segs[2].path).unlink()
    # 3. a file renamed into place whose row never committed (playable)
    orphan = root / segment_name("gate", T0 + 50)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(segment_files[0].read_bytes())
    # 4. an unplayable file in an hour directory
    junk = root / segment_name("gate", T0 + 60)
    junk.write_bytes(os.urandom(5000))
    # 5. ffmpeg's leftovers: a closed segment never committed, a file with no frames
    incoming = store.incoming("lane")
    incoming.mkdir(parents=True)
    (incoming / "run-000001.mp4").write_bytes(segment_files[1].read_bytes())
    head = segment_files[2].read_bytes()
    (incoming / "run-000002.mp4").write_bytes(head[:600])
    # 6. a segment cut in the middle of a frame (the disk filled up): salvaged
    cut = segment_files[3].read_bytes()
    (incoming / "run-000003.mp4").write_bytes(cut[: len(cut) * 6 // 10])
    store.close()

    counts = open_store(root).recover()  # open() recovered already: now nothing is left
    assert counts == {"garbage": 0, "dropped": 0, "recovered": 0, "removed": 0}
    found = assert_index_matches_disk(root)
    paths = {r[2] for r in found}
    assert not {segs[0].path, segs[1].path, segs[2].path} & paths
    assert orphan.relative_to(root).as_posix() in paths
    assert not junk.exists()
    lane = sorted((r for r in found if r[1] == "lane"), key=lambda r: r[4] - r[3])
    assert len(lane) == 2
    assert lane[1][4] - lane[1][3] == pytest.approx(1.0, abs=0.1)
    assert 0.1 < lane[0][4] - lane[0][3] < 0.9  # the salvaged one: its frames that arrived
    assert all(probe.decodes(root / r[2]) for r in found)
    db = sqlite3.connect(root / Index.FILENAME)
    counters = dict(db.execute("SELECT name, value FROM counter"))
    assert counters["recovered"] == 3


def test_schema_versions(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite3"
    index = Index(path)
    assert index.version() == SCHEMA_VERSION == len(MIGRATIONS)
    assert index.migrate() == 0  # already current
    # A later version adds a step: it runs once, in order, and records the version.
    step = "ALTER TABLE segment ADD COLUMN sha256 TEXT"
    assert index.migrate([*MIGRATIONS, step]) == 1
    assert index.version() == SCHEMA_VERSION + 1
    assert "sha256" in [r[1] for r in index.db.execute("PRAGMA table_info(segment)")]
    index.close()
    with pytest.raises(IndexError_, match="newer than this firmware"):
        Index(path)  # this code is older than the database now


def test_fault_classification() -> None:
    assert classify(OSError(errno.ENOSPC, "x")) == "disk-full"
    assert classify(OSError(errno.EROFS, "x")) == "read-only"
    assert classify(OSError(errno.EIO, "x")) == "io-error"
    assert classify(OSError(errno.ENOENT, "x")) == "missing"
    assert classify(sqlite3.OperationalError("database or disk is full")) == "disk-full"
    assert classify(sqlite3.OperationalError("attempt to write a readonly database")) \
        == "read-only"
    assert classify_text("av_interleaved_write_frame(): No space left on device") \
        == "disk-full"
    assert classify_text("Connection refused") is None


def _fill_disk(path: Path) -> None:
    with path.open("wb") as fh, pytest.raises(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()


def commit_blobs(store: Store, camera: str, starts: list[float], size: int) -> list:
    """Commit `size`-byte files as segments (rows are never probed: any bytes do)."""
    incoming = store.incoming(camera)
    incoming.mkdir(parents=True, exist_ok=True)
    done = []
    for i, start in enumerate(starts):
        staged = incoming / f"blob-{i:06d}.mp4"
        staged.write_bytes(b"\0" * size)
        done.append(store.commit(camera, staged, start, start + 10))
    return done


def test_full_disk_reopens_by_giving_up_the_reserve(tmpfs: Path) -> None:
    """The recorder lets go of a full disk (index closed); reopening needs room for the
    index's -wal/-shm files: the reserve file gives it, then the oldest footage goes."""
    root = tmpfs / "rec"
    store = open_store(root)
    assert (root / ".reserve").stat().st_size == store.reserve_bytes
    segs = commit_blobs(store, "gate", [T0 + 10 * i for i in range(16)], 200_000)
    store.close()
    _fill_disk(tmpfs / "filler")  # something else takes the last byte
    store = Store(root, Limits(quota=2**30, keep_recent_s=0))  # (the floor may take all)
    store.open()
    kept = [r[2] for r in rows(root)]
    assert kept and kept == [s.path for s in segs[-len(kept):]], "oldest must go first"
    assert len(kept) < len(segs)
    assert (root / ".reserve").exists(), "the reserve is back for the next time"
    store.close()
    assert_index_matches_disk(root)

    # Without a reserve, a full disk that cannot be reopened is disk-full, not io-error.
    (root / ".reserve").unlink()
    _fill_disk(tmpfs / "filler2")
    with pytest.raises(StorageFault) as fault:
        Store(root, Limits(quota=2**30)).open()
    assert fault.value.reason == "disk-full", fault.value


def test_clip_asked_for_while_the_store_is_closed_is_applied_at_start(tmp_path: Path) -> None:
    """A ProtectClip that arrives before the recorder (re)starts is protected once it has
    opened the store, not only after a degraded spell."""
    from recorder.recorder import Recorder

    rec = Recorder(tmp_path / "rec", {}, limits=Limits(quota=2**30))
    rec.start()
    rec.stop()  # e.g. the component crashed; the supervisor restarts it later
    rec.protect("panic-7", T0, T0 + 60)
    assert rec._unapplied, "the store is closed: the request waits"
    rec.start()
    try:
        assert rec.store.index is not None and rec.store.index.clip("panic-7") is not None
        assert rec._unapplied == []
    finally:
        rec.stop()


def test_salvage_leftovers_are_not_indexed(tmp_path: Path, segment_files: list[Path]) -> None:
    """A crash inside a salvage (the remuxed copy written, not yet renamed over the
    original) leaves `.salvage-*` next to the original: never a second segment."""
    import shutil

    root = tmp_path / "rec"
    store = open_store(root)
    incoming = store.incoming("gate")
    incoming.mkdir(parents=True)
    shutil.copyfile(segment_files[3], incoming / "run-000001.mp4")
    shutil.copyfile(segment_files[3], incoming / ".salvage-run-000001.mp4")
    hour = root / segment_name("gate", T0)
    hour.parent.mkdir(parents=True)
    shutil.copyfile(segment_files[4], hour)  # crash between rename and insert...
    shutil.copyfile(segment_files[4], hour.with_name(f".salvage-{hour.name}"))  # ...salvaged
    store.close()
    store = open_store(root)
    store.close()
    found = assert_index_matches_disk(root)
    assert len(found) == 2, found
    assert not list(root.rglob(".salvage-*"))


def test_camera_quota_never_deletes_protected_footage(tmp_path: Path) -> None:
    """Protected footage counts against the event share of the total quota, not against
    the camera's quota: a camera quota full of a clip keeps the clip and the camera still
    keeps a ring buffer of its own."""
    root = tmp_path / "rec"
    store = open_store(root, quota=100_000, camera_quota={"gate": 10_000}, event_share=0.3)
    clip = commit_blobs(store, "gate", [T0 + 10 * i for i in range(10)], 1000)
    store.protect("person-1", T0, T0 + 100, ["gate"])  # 10 kB: 10 % of the quota
    commit_blobs(store, "lane", [T0 + 10 * i for i in range(10)], 1000)
    after = commit_blobs(store, "gate", [T0 + 100 + 10 * i for i in range(12)], 1000)
    store.make_space({"gate": 1250}, now=T0 + 300)
    assert store.index is not None and store.index.protected_bytes() == 10_000
    kept = {r[2] for r in rows(root) if r[1] == "gate"}
    assert {s.path for s in clip} <= kept, "protected footage deleted"
    unprotected = [s for s in after if s.path in kept]
    assert unprotected == after[-len(unprotected):], "oldest unprotected first"
    assert 1000 * len(unprotected) + 1250 <= 10_000 < 1000 * (len(unprotected) + 1) + 1250
    store.close()
    assert_index_matches_disk(root)


def test_footage_recorded_before_the_clock_was_set(tmp_path: Path) -> None:
    """A Pi without RTC records with a 1970 clock until NTP syncs. That footage is not
    the oldest (quotas delete in recording order) and has no known age (max age leaves
    it, and the clip protecting it, alone)."""
    root = tmp_path / "rec"
    store = open_store(root, quota=20_000, max_age_s=7 * 86400)
    week_ago = commit_blobs(store, "gate", [T0 + 10 * i for i in range(10)], 1000)
    # Reboot without network: the clock starts at 1970 + 100 s.
    unset = commit_blobs(store, "gate", [100 + 10 * i for i in range(10)], 1000)
    store.protect("panic-1", 150, 250, ["gate"])
    store.make_space({}, now=400)  # before NTP: max age cannot tell anything
    # NTP steps the clock to 8 days after the first boot's footage.
    store.make_space({}, now=T0 + 8 * 86400)
    kept = [r[2] for r in rows(root)]
    assert all(s.path not in kept for s in week_ago), "max age still applies to the rest"
    assert sorted(kept) == sorted(s.path for s in unset)
    assert store.index is not None and store.index.clip("panic-1") is not None
    store.close()
    assert_index_matches_disk(root)

    # The quota: what the first boot recorded goes before what the second recorded.
    root = tmp_path / "rec2"
    store = open_store(root, quota=20_000)
    first = commit_blobs(store, "gate", [T0 + 10 * i for i in range(10)], 1000)
    unset = commit_blobs(store, "gate", [100 + 10 * i for i in range(10)], 1000)
    later = commit_blobs(store, "gate", [T0 + 86400 + 10 * i for i in range(4)], 1000)
    store.make_space({})
    kept = {r[2] for r in rows(root)}
    assert kept == {s.path for s in first[4:] + unset + later}
    store.close()
    assert_index_matches_disk(root)


def test_disk_mounted_over_the_open_store_is_a_fault_then_reopened(tmp_path: Path) -> None:
    """The SSD comes late and is mounted over the path of a store already open (on the
    SD card): the open store must not write rows into its now hidden index while the
    files land on the new disk. check() faults; the reopen takes the new disk's store."""
    if os.geteuid() != 0:
        pytest.skip("mounts need root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    early = open_store(mnt / "rec")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        open_store(mnt / "rec").close()  # the SSD holds a store of its own
        with pytest.raises(StorageFault) as fault:
            early.check()
        assert fault.value.reason == "missing" and "changed" in fault.value.detail
        early.open()  # what the recorder does after the fault
        [seg] = commit_blobs(early, "gate", [T0], 1000)
        early.close()
        assert [r[2] for r in rows(mnt / "rec")] == [seg.path]
        assert_index_matches_disk(mnt / "rec")
    finally:
        early.close()
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.timeout(40)
def test_recovery_checks_the_end_of_long_leftovers_and_beats(
        tmp_path: Path, scene: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leftovers are checked by decoding their end only (where a cut damages them); a
    check slower than its budget (a long H.265 segment on a Pi) keeps the file rather
    than deleting good footage; the recorder beats its supervisor all along."""
    import threading

    from recorder.recorder import Recorder

    root = tmp_path / "rec"
    open_store(root).close()
    incoming = root / "gate" / INCOMING
    incoming.mkdir(parents=True)
    long = tmp_path / "long.mp4"  # a 10 s segment as the recorder's ffmpeg writes them
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(scene), "-c", "copy",
                    "-movflags", "+frag_keyframe+empty_moov+default_base_moof", str(long)],
                   check=True, timeout=30)
    data = long.read_bytes()
    (incoming / "run-000001.mp4").write_bytes(data[: len(data) * 7 // 10])  # cut mid-frame
    stop = threading.Event()
    stop.set()  # start (recover), then stop at once
    Recorder(root, {}, limits=Limits(quota=2**30)).run(stop)
    [cut] = assert_index_matches_disk(root)
    assert 5.0 < cut[4] - cut[3] < 8.0  # salvaged: the frames that arrived
    assert probe.decodes(root / cut[2])

    # An ffmpeg that cannot finish in time (emulates a Pi decoding a long H.265 file).
    (incoming / "run-000002.mp4").write_bytes(data)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ffmpeg").write_text("#!/bin/sh\nexec sleep 60\n")
    (bin_dir / "ffmpeg").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(probe, "CHECK_TIMEOUT_S", 2.0)
    beats: list[float] = []
    Recorder(root, {}, limits=Limits(quota=2**30)).run(stop, beat=lambda: beats.append(1))
    found = assert_index_matches_disk(root)
    assert len(found) == 2 and any(r[4] - r[3] == pytest.approx(10.0, abs=0.2) for r in found)
    assert len(beats) >= 3, "no beat while the check ran"
