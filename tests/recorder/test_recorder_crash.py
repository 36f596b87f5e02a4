"""kill -9 at random moments: of the process running the recorder, and of its ffmpegs.

After every kill the store is reopened the way a restart does it (recovery), and then:
index == disk, every indexed segment decodes, and per camera at most the segment that
was open at the kill is lost (tracked by inode: a commit renames, keeping the inode).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from recorder_testkit import (
    assert_index_matches_disk,
    undecodable,
)

from drivers.cameras.base import StreamInput
from recorder.store import SUFFIX, Limits, Store
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("RONDA_CRASH_ROUNDS", "20"))


def start_recorder(store: Path, live: StreamInput, log: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "devtools.recorder", "--path", str(store), "--segment-s", "1",
            "--quota", "200M", "--camera", f"a={live.url}", "--camera", f"b={live.url}",
            "--input-option", "re=", "--input-option", "stream_loop=-1"]
    with log.open("ab") as err:
        return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)


def inodes(store: Path) -> dict[int, str]:
    """inode -> camera of every segment file now on disk (open ones included)."""
    found = {}
    for path in store.rglob(f"*{SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            found[path.stat().st_ino] = path.relative_to(store).parts[0]
    return found


def ffmpeg_children(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(proc.pid).children(recursive=True)
                if c.name() == "ffmpeg"]
    except psutil.NoSuchProcess:
        return []


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_kill_9_rounds_keep_index_equal_to_disk(tmp_path: Path, live: StreamInput) -> None:
    rng = random.Random(int(os.environ.get("RONDA_CRASH_SEED", "3")))
    store = tmp_path / "store"
    log = tmp_path / "recorder.log"
    checked: set[str] = set()
    kinds = {"recorder": 0, "ffmpeg": 0}
    for round_no in range(ROUNDS):
        proc = start_recorder(store, live, log)
        try:
            # Any moment: during recovery, ffmpeg start-up, mid-segment, at a commit.
            time.sleep(rng.uniform(0.3, 2.0))  # on purpose: a random moment to kill
            children = ffmpeg_children(proc)
            if rng.random() < 0.4 and children:
                kinds["ffmpeg"] += 1
                rng.choice(children).send_signal(signal.SIGKILL)
                time.sleep(rng.uniform(0.1, 1.0))  # on purpose: as above
            else:
                kinds["recorder"] += 1
            children = ffmpeg_children(proc)
            snapshot = inodes(store)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            # PDEATHSIG takes them down (a zombie waiting for init counts as dead)
            wait_for(lambda c=children: all(map(gone, c)), timeout=10, interval=0.02,
                     what="ffmpeg children to die with the recorder")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

        # What a restart does first: open the store, which recovers it.
        reopened = Store(store, Limits(quota=200 * 2**20))
        reopened.open()
        reopened.close()

        found = assert_index_matches_disk(store, allow_empty=True)  # killed before a segment
        kept = {(store / r[2]).stat().st_ino for r in found}
        lost: dict[str, int] = {}
        for ino, camera in snapshot.items():
            if ino not in kept:
                lost[camera] = lost.get(camera, 0) + 1
        assert all(n <= 1 for n in lost.values()), f"round {round_no}: lost {lost}"
        new = [rel for _, _, rel, *_ in found if rel not in checked]
        assert undecodable([store / rel for rel in new]) == []
        checked.update(new)
    assert kinds["recorder"] and kinds["ffmpeg"], kinds
    assert len(checked) >= ROUNDS // 2, "too little was recorded to mean anything"
