"""Storage faults on real filesystems (tests run as root): a full tmpfs, an ext4 image
that the kernel remounts read-only after an error, the disk unmounted. The recorder
must degrade (storage callback), not crash, and recover by itself."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorder_testkit import assert_index_matches_disk

from drivers.cameras.base import StreamInput
from firmware.cli import main as cli_main
from firmware.commands import clips
from recorder import probe
from recorder.recorder import Recorder
from recorder.store import Limits
from tests.waiting import wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, unmounted at the end whatever happens."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=True)
    yield mnt
    _umount(mnt)


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 32 MiB ext4 image mounted with errors=remount-ro: (image, mountpoint)."""
    image, mnt = tmp_path / "disk.img", tmp_path / "ext4"
    mnt.mkdir()
    with image.open("wb") as fh:
        fh.truncate(32 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mnt)], check=True)
    yield image, mnt
    _umount(mnt)


class Running:
    """A Recorder on its own thread, with its storage state changes recorded."""

    def __init__(self, root: Path, live: StreamInput, **limits: int) -> None:
        self.events: list[tuple[str, str]] = []
        self.segments = 0
        self.recorder = Recorder(
            root, {"a": live}, segment_s=1, limits=Limits(quota=100 * 2**20, **limits),
            on_storage_state=lambda state, reason, detail: self.events.append((state, reason)),
            on_segment=self._segment, check_every_s=0.3, retry_min_s=0.3, retry_cap_s=1.0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.recorder.run, args=(self.stop,), daemon=True)

    def _segment(self, camera: str, segment: object) -> None:
        self.segments += 1

    def wait_segments(self, more: int, timeout: float = 20) -> None:
        target = self.segments + more
        wait_for(lambda: self.segments >= target, timeout=timeout,
                 what=f"{more} more segment(s)")

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(20)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_disk_full_degrades_then_recovers(tmpfs: Path, live: StreamInput) -> None:
    root = tmpfs / "rec"
    with Running(root, live) as run:
        run.wait_segments(2)
        filler = tmpfs / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"],
                       capture_output=True, check=False)  # until ENOSPC
        wait_for(lambda: ("degraded", "disk-full") in run.events, timeout=20,
                 what="degraded: disk-full")
        assert run.thread.is_alive(), "recorder crashed"
        assert run.recorder.health()["state"] == "degraded"
        filler.unlink()
        wait_for(lambda: run.events[-1][0] == "ok", timeout=20, what="recovery")
        run.wait_segments(2)
    assert not run.thread.is_alive()
    found = assert_index_matches_disk(root)

    # The outage shows as a hole when the range is exported; the clip holds the rest.
    out = tmpfs.parent / "outage.mp4"
    code = cli_main(["clips", "export", "--store", str(root), "--camera", "a", "-q",
                     "--from", str(found[0][3]), "--to", str(found[-1][4]), "-o", str(out)])
    assert code == clips.EXIT_PARTIAL
    recorded = sum(r[4] - r[3] for r in found)
    length = probe.container_duration(out)
    assert length is not None and abs(length - recorded) <= 1.0, (length, recorded)


def _loop_device(mnt: Path) -> str:
    for line in Path("/proc/mounts").read_text().splitlines():
        dev, where = line.split()[:2]
        if where == str(mnt):
            return Path(dev).name
    raise AssertionError(f"{mnt} not mounted")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_read_only_remount_and_missing_disk_then_recovery(
        ext4: tuple[Path, Path], live: StreamInput) -> None:
    image, mnt = ext4
    trigger = Path("/sys/fs/ext4") / _loop_device(mnt) / "trigger_fs_error"
    if not trigger.exists():
        pytest.skip("kernel without ext4 trigger_fs_error")
    root = mnt / "rec"
    with Running(root, live) as run:
        run.wait_segments(2)
        trigger.write_text("1\n")  # ext4_error(): the kernel remounts it read-only
        wait_for(lambda: ("degraded", "read-only") in run.events, timeout=20,
                 what="degraded: read-only")
        assert run.thread.is_alive(), "recorder crashed"
        # The recorder let go of the disk: it can be unmounted, checked and remounted.
        wait_for(lambda: subprocess.run(["umount", str(mnt)], capture_output=True)
                 .returncode == 0, timeout=20, interval=0.3, what="umount")
        wait_for(lambda: ("degraded", "missing") in run.events, timeout=20,
                 what="degraded: missing (it must not record onto the bare mountpoint)")
        assert not root.exists()
        subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True, check=False)
        subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(mnt)],
                       check=True)
        wait_for(lambda: run.events[-1][0] == "ok", timeout=20, what="recovery")
        run.wait_segments(2)
    assert_index_matches_disk(root)


def test_write_probe_tells_a_full_disk(tmpfs: Path) -> None:
    from recorder.store import Store, classify

    store = Store(tmpfs / "rec", Limits(quota=2**30))
    store.open()
    store.probe_write()  # fine while there is room
    subprocess.run(["dd", "if=/dev/zero", f"of={tmpfs / 'filler'}", "bs=64k"],
                   capture_output=True, check=False)
    with pytest.raises(OSError) as exc:
        store.probe_write()
    assert classify(exc.value) == "disk-full"
    assert not (tmpfs / "rec" / ".write-probe").exists()
    store.close()
