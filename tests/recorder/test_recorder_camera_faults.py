"""A camera that fails is a camera fault, not a storage fault: the store stays ok (and
the other cameras keep recording), while the camera is reported offline with ffmpeg's
reason. An ambiguous error ("Input/output error" is also what a dead RTSP camera gives)
is settled by a write probe of the disk."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from drivers.cameras.base import StreamInput
from recorder.recorder import Recorder
from recorder.store import Limits
from tests.waiting import wait_for


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(60)
def test_dead_camera_leaves_the_store_ok(tmp_path: Path, live: StreamInput) -> None:
    dead = StreamInput(url=f"rtsp://user:secret@127.0.0.1:{closed_port()}/main",
                       options={"rtsp_transport": "tcp"})
    states: list[tuple[str, str, str]] = []
    storage: list[tuple[str, str]] = []
    segments: list[str] = []
    rec = Recorder(tmp_path / "rec", {"dead": dead, "live": live}, segment_s=1,
                   limits=Limits(quota=2**30),
                   on_state=lambda cam, state, reason: states.append((cam, state, reason)),
                   on_storage_state=lambda state, reason, detail: storage.append((state, reason)),
                   on_segment=lambda cam, seg: segments.append(cam),
                   check_every_s=0.3, retry_min_s=0.3)
    stop = threading.Event()
    runner = threading.Thread(target=rec.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: any(c == "dead" and s == "offline" for c, s, _ in states),
                 timeout=20, what="the dead camera reported offline")
        wait_for(lambda: segments.count("live") >= 3, timeout=20,
                 what="the live camera recording meanwhile")
        # What ffmpeg prints when an RTSP camera drops: ambiguous, so the disk is probed.
        rec._camera_state("dead", "offline", "exited with code 1: rtsp://***:***@cam: "
                                             "Input/output error")
        wait_for(lambda: not rec._probe_requested, timeout=5, what="the write probe")
        assert rec.state == "ok" and storage == []
        reasons = [r for c, s, r in states if c == "dead" and s == "offline"]
        assert reasons and all("secret" not in r for r in reasons)
        assert rec.health()["cameras"]["dead"]["restarts"] >= 1
    finally:
        stop.set()
        runner.join(20)
