"""RTSP end to end: a supervised consumer ffmpeg rides out repeated camera outages.

The consumer is a plain ``ffmpeg -c copy -f segment`` (the real recorder is another
area's) under `ManagedProcess`, reporting to the camera registry as role ``main``.
The RTSP test camera is stopped for `outage` seconds and started again, several
times. Outage lengths come from RONDA_TEST_OUTAGES (seconds, comma separated); the
default, four outages of 3 s and one of 10 s, keeps the test under 50 s;
RONDA_TEST_OUTAGES=10,10,10,10,10 is the long version.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import time
from pathlib import Path

import pytest

from devtools.rtsp_camera import RtspTestCamera
from drivers.cameras.base import mask_credentials
from drivers.cameras.progress import PROGRESS_ARGS, FfmpegProgress
from drivers.cameras.registry import CameraRegistry
from drivers.cameras.rtsp import RtspCamera
from drivers.managed import ManagedProcess
from firmware.bus import EventBus
from firmware.events import CameraStateEvent
from tests.waiting import wait_for

SEGMENT_S = 2.0
BACKOFF_CAP_S = 4.0
OUTAGES = [float(v) for v in os.environ.get("RONDA_TEST_OUTAGES",
                                            "3,3,3,3,10").split(",")]


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def segment_spans(folder: Path) -> list[tuple[float, float, str]]:
    """(start, end, name) of each segment on the wall clock: end = mtime, start = end - duration."""
    spans = []
    for path in sorted(folder.glob("*.ts")):
        if path.stat().st_size == 0:
            continue
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration",
                              "-of", "json", str(path)], capture_output=True, check=True)
        duration = float(json.loads(out.stdout)["format"].get("duration") or 0)
        end = path.stat().st_mtime
        spans.append((end - duration, end, path.name))
    return sorted(spans)


def next_event(events: queue.SimpleQueue, state: str, timeout: float) -> tuple[float, str]:
    """(when it was seen, reason) of the next `state` event; the ones before it are dropped."""
    def seen() -> tuple[float, str] | None:
        while True:
            try:
                ev = events.get_nowait()
            except queue.Empty:
                return None
            if ev.state == state:
                return time.time(), ev.reason

    return wait_for(seen, timeout, f"a {state} event")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_consumer_reconnects_after_each_outage(tmp_path, scene_file):
    out = tmp_path / "segments"
    out.mkdir()
    server = RtspTestCamera().start()
    camera = RtspCamera("gate", server.plain_url, timeout_s=3)
    bus = EventBus()
    events: queue.SimpleQueue = queue.SimpleQueue()
    bus.subscribe(CameraStateEvent, events.put)
    bus.start()
    registry = CameraRegistry(
        [camera], lambda cam, state, reason: bus.publish(
            CameraStateEvent(camera=cam, state=state, reason=reason)))
    runs = iter(range(1000))

    def make_args() -> list[str]:
        return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                *camera.main.ffmpeg_args(), "-map", "0:v", "-c", "copy", *PROGRESS_ARGS,
                "-f", "segment", "-segment_time", str(SEGMENT_S), "-reset_timestamps", "1",
                str(out / f"run{next(runs):03d}-%03d.ts")]

    proc: ManagedProcess
    progress = FfmpegProgress(lambda n: (proc.beat(), registry.report_frames("gate", "main", n)))
    proc = ManagedProcess(
        "gate-main", make_args, on_start=progress.attach, stdout=subprocess.PIPE,
        on_state=lambda s, r: registry.report_state("gate", "main", s, r),
        stall_after_s=6, backoff_min_s=0.5, backoff_cap_s=BACKOFF_CAP_S,
        redact=mask_credentials, ready=camera.reachable)
    proc.start()
    latencies, offline_reasons = [], []
    try:
        next_event(events, "online", 20)
        for i, outage in enumerate(OUTAGES):
            time.sleep(1.5)  # some footage before the outage
            server.stop(hard=i % 2 == 1)  # every other one a power cut (SIGKILL)
            _, reason = next_event(events, "offline", 3 + 5)
            offline_reasons.append(reason)
            time.sleep(outage)  # on purpose: the outage itself
            server.start()
            back = time.time()
            t_online, _ = next_event(events, "online", BACKOFF_CAP_S + 10)
            latencies.append(t_online - back)
        time.sleep(3.0)  # frame rate settles (FPS_SETTLE_S) and is measured
        health = registry.health()["gate"]
        assert health["state"] == "online"
        assert health["reconnects"] == len(OUTAGES)
        assert health["fps"] is not None and 12 < health["fps"] < 18, health  # camera sends 15
    finally:
        proc.stop()
        server.close()
        bus.stop()
    # back within the backoff cap after each return of the camera (plus slack for a loaded
    # machine: the figure itself is printed below and benched)
    assert max(latencies) <= BACKOFF_CAP_S + 3.0, latencies
    assert all(offline_reasons), offline_reasons
    # no ffmpeg (or anything) left behind that writes into our folder
    assert processes_mentioning(str(out)) == []
    # the footage gap at each outage is at most the outage plus one segment
    spans = segment_spans(out)
    run_of = [name.split("-")[0] for _, _, name in spans]
    gaps = [spans[i + 1][0] - spans[i][1] for i in range(len(spans) - 1)
            if run_of[i] != run_of[i + 1]]
    assert len(gaps) >= len(OUTAGES)
    big = sorted(gaps)[-len(OUTAGES):]  # the outage gaps (restarts without outage are ~0)
    # Bounded loosely: a loaded machine starts ffmpeg late. The tight figure (about the
    # outage + 0.5 s) is printed below and measured by bench/cameras.py; what this proves is
    # that the recorder does not sit out a whole backoff after the camera returns.
    for outage, gap in zip(sorted(OUTAGES), big, strict=True):
        assert gap <= outage + SEGMENT_S + 5.0, (outage, gap, gaps)
    print(f"reconnect latencies {[round(v, 2) for v in latencies]}; "
          f"gaps {[round(g, 2) for g in gaps]}; restarts {proc.restarts}")
