"""Footage stays readable when the recordings disk is read-only.

An SSD with a filesystem error is remounted read-only by the kernel (errors=remount-ro):
exactly when the police ask for the hour before an incident. The index is a WAL database,
which SQLite cannot open even read-only once its -shm file cannot be made; the reader falls
back to opening it as immutable (no writer can exist on a read-only filesystem).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorder_testkit import fill_store

from recorder.index import Index
from recorder.store import Limits, Store
from web import recordings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    image, mnt = tmp_path / "disk.img", tmp_path / "ssd"
    mnt.mkdir()
    with image.open("wb") as fh:
        fh.truncate(32 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


def test_footage_on_a_read_only_disk_can_still_be_listed_and_read(
        ext4: Path, segment_files: list[Path], tmp_path: Path) -> None:
    root = ext4 / "recordings"
    store = Store(root, Limits(quota=2**30, min_free=0))
    store.open()
    start = time.time() - 600
    fill_store(store, segment_files, "gate", [start + i for i in range(6)], tmp_path)
    store.close()
    assert not (root / (Index.FILENAME + "-shm")).exists()  # closed cleanly: no WAL files
    subprocess.run(["mount", "-o", "remount,ro", str(ext4)], check=True)

    index = Index(root / Index.FILENAME, readonly=True)
    try:
        assert len(index.segments("gate", start - 1, start + 10)) == 6
    finally:
        index.close()
    # the node's web page reads through the same index: the timeline is there, unbroken
    [(first, last)] = recordings.spans(root, "gate", start - 1, start + 10)
    assert first == pytest.approx(start, abs=0.01) and last == pytest.approx(start + 6, abs=0.01)
