"""Recording many times the quota with 1 s segments: usage, sampled all along, never
exceeds quota + one segment per camera, and protected footage survives."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import pytest
from recorder_testkit import all_video_bytes, assert_index_matches_disk, rows

from drivers.cameras.base import StreamInput
from recorder.export import plan
from recorder.index import Index
from recorder.recorder import Recorder
from recorder.store import Limits
from tests.waiting import wait_for

QUOTA = 60_000


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_usage_stays_within_quota_and_protected_clip_survives(
        tmp_path: Path, live: StreamInput) -> None:
    store = tmp_path / "store"
    closed: list[tuple[str, int]] = []
    spans: list[tuple[str, float, float]] = []
    rec = Recorder(store, {"a": live, "b": live}, segment_s=1,
                   limits=Limits(quota=QUOTA, event_share=0.3),
                   on_segment=lambda cam, seg: (closed.append((cam, seg.bytes)),
                                                spans.append((cam, seg.start, seg.end))))
    stop = threading.Event()
    runner = threading.Thread(target=rec.run, args=(stop,), daemon=True)
    runner.start()
    samples: list[int] = []
    try:
        wait_for(lambda: len([c for c in closed if c[0] == "a"]) >= 3, timeout=20,
                 what="3 segments of camera a")
        first = [r for r in rows(store) if r[1] == "a"][:2]
        event_start, event_end = first[0][3] + 0.1, first[-1][4] - 0.1
        rec.protect("ev-1", event_start, event_end, ["a"])
        deadline = time.monotonic() + 11
        while time.monotonic() < deadline:
            samples.append(all_video_bytes(store))
            time.sleep(0.05)  # on purpose: sampling the disk use over the window
    finally:
        stop.set()
        runner.join(15)
    assert not runner.is_alive()
    written = sum(size for _, size in closed)
    assert written > 3 * QUOTA, f"only {written} bytes recorded: not many times the quota"
    largest = {cam: max(size for c, size in closed if c == cam) for cam in ("a", "b")}
    bound = QUOTA + sum(largest.values())
    assert max(samples) <= bound, f"usage {max(samples)} > quota + one segment per camera"
    found = assert_index_matches_disk(store)
    b = [span for span in spans if span[0] == "b"]
    assert len(b) >= 10
    for prev, nxt in itertools.pairwise(b):  # wall-clock times chain, no holes, no overlaps
        assert abs(nxt[1] - prev[2]) < 0.3, (prev, nxt)
    assert {r[2] for r in first} <= {r[2] for r in found}, "protected segments were deleted"
    index = Index(store / Index.FILENAME, readonly=True)
    try:
        kept = plan(index, "a", event_start, event_end)
        assert kept.segments and not kept.gaps
        assert index.counters().get("garbage", 0) > 0
    finally:
        index.close()
    health = rec.health()
    assert health["quota"] == QUOTA and health["garbage"] > 0
    assert health["bytes_used"] <= QUOTA
