"""The recorder's wiring: a supervised component recording the registry's main streams,
reporting them back as role `main`, protecting clips from the bus and publishing
StorageEvents when the store degrades and recovers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from drivers.cameras.base import Camera, StreamInput
from drivers.cameras.registry import CameraRegistry
from firmware import config
from firmware.bus import EventBus
from firmware.events import ProtectClip, StorageEvent
from firmware.wiring import Context
from firmware.wiring import recorder as wiring
from recorder.index import Index
from recorder.store import MARKER
from tests.waiting import wait_for


def make_ctx(tmp_path: Path, registry: CameraRegistry | None) -> Context:
    cfg = config.parse({
        "node": {"id": "test-node", "data_dir": str(tmp_path / "state")},
        "cameras": [{"name": "gate", "url": "rtsp://127.0.0.1:9/unused"}],
        "recorder": {"path": str(tmp_path / "rec"), "segment_s": 1, "quota": "50 MiB",
                     "camera_quota": {"gate": "40 MiB"}, "min_free": 0},
    })
    ctx = Context(config=cfg, bus=EventBus(), health=dict, state_dir=tmp_path / "state")
    if registry is not None:
        ctx.shared["cameras"] = registry
    return ctx


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_wiring_records_reports_protects_and_publishes_storage_events(
        tmp_path: Path, live: StreamInput) -> None:
    registry = CameraRegistry([Camera("gate", live)])
    ctx = make_ctx(tmp_path, registry)
    storage: list[StorageEvent] = []
    ctx.bus.subscribe(StorageEvent, storage.append)
    ctx.bus.start()
    [service] = wiring.build(ctx)
    assert ctx.shared["recorder"] is service
    service.recorder.check_every_s = 0.3
    service.recorder.retry_cap_s = 1.0
    root = tmp_path / "rec"
    service.start()
    try:
        wait_for(lambda: (service.health()["cameras"]["gate"]["segments"] or 0) >= 2,
                 timeout=20, what="two segments")
        gate = registry.health()["gate"]
        assert gate["roles"]["main"]["state"] == "online"
        wait_for(lambda: registry.health()["gate"]["roles"]["main"]["fps"], timeout=10,
                 what="frames reported as role main")
        now = time.time()
        ctx.bus.publish(ProtectClip(event_id="alarm-1", start=now - 2, end=now + 2,
                                    cameras=("gate",)))
        index = Index(root / Index.FILENAME, readonly=True)
        wait_for(lambda: index.clip("alarm-1"), timeout=5, what="the clip protected")
        index.close()
        health = service.health()
        for key in ("bytes_used", "quota", "oldest_footage_h", "write_rate_bps",
                    "recovered", "garbage", "free_bytes"):
            assert key in health, key
        assert health["cameras"]["gate"]["last_segment_age_s"] < 5

        # The disk "goes away" (its marker with it): degraded, then back.
        marker = root / MARKER
        identity = marker.read_text()
        marker.unlink()
        wait_for(lambda: any(e.state == "degraded" for e in storage), timeout=10,
                 what="a degraded StorageEvent")
        degraded = next(e for e in storage if e.state == "degraded")
        assert degraded.reason == "missing" and degraded.type == "storage"
        wait_for(lambda: registry.health()["gate"]["roles"]["main"]["state"] == "offline",
                 timeout=5, what="main stream reported offline")
        # A panic during the outage: its clip is protected once the disk is back.
        ctx.bus.publish(ProtectClip(event_id="during-outage", start=now, end=now + 5))
        wait_for(lambda: any(r[0] == "during-outage" for r in service.recorder._unapplied), 10,
                 "the request kept while the disk is gone")
        marker.write_text(identity)
        wait_for(lambda: storage[-1].state == "ok", timeout=15, what="an ok StorageEvent")
        index = Index(root / Index.FILENAME, readonly=True)
        wait_for(lambda: index.clip("during-outage"), timeout=5,
                 what="the clip asked for during the outage")
        index.close()
        before = service.health()["cameras"]["gate"]["segments"]
        wait_for(lambda: service.health()["cameras"]["gate"]["segments"] > before,
                 timeout=20, what="recording again")
        assert service.summary().startswith("recording")
    finally:
        service.stop(timeout=10)
        ctx.bus.stop()
    assert not service.running


class ReachableCamera(Camera):
    """A registry camera whose reachability check the test can see being used."""

    def reachable(self) -> bool | None:
        return True


def test_wiring_restarts_ffmpeg_when_the_camera_is_reachable_again(tmp_path: Path) -> None:
    """The recorder's ffmpeg waits on the registry camera's `reachable` (ManagedProcess
    ready=) and the camera's own backoff cap, as detection's decoder does; a probe that
    works again ends its backoff wait at once."""
    camera = ReachableCamera("gate", StreamInput(url="rtsp://127.0.0.1:9/main"))
    registry = CameraRegistry([camera])
    ctx = make_ctx(tmp_path, registry)
    ctx.config.cameras[0].backoff_cap_s = 7.0
    [service] = wiring.build(ctx)
    cam = service.recorder.cameras["gate"]
    assert cam._ready == camera.reachable
    assert cam.process.backoff_cap_s == 7.0
    cam.process.state = "offline"  # waiting out a backoff
    assert cam._ready_check() is True  # reachable, but not seen down: the wait goes on
    registry.report_state("gate", "probe", "online")  # the probe got the stream
    assert [cam._ready_check(), cam._ready_check()] == [False, True]  # the wait ends
    # Without a registry there is nothing to ask: the plain backoff applies.
    [plain] = wiring.build(make_ctx(tmp_path / "plain", None))
    assert plain.recorder.cameras["gate"]._ready is None


def test_wiring_without_registry_falls_back_to_the_config_url(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, None)
    [service] = wiring.build(ctx)
    assert service.recorder.cameras["gate"].source == StreamInput(
        url="rtsp://127.0.0.1:9/unused")
    assert service.recorder.store.limits.camera_quota == {"gate": 40 * 2**20}


def test_wiring_per_camera_overrides(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, None)
    ctx.config.recorder.camera_segment_s = {"gate": 4.0}
    ctx.config.recorder.camera_max_age_days = {"gate": 2.0}
    ctx.config.recorder.keep_recent_h = 1.5
    ctx.config.cameras[0].audio = False
    [service] = wiring.build(ctx)
    cam = service.recorder.cameras["gate"]
    assert cam.segment_s == 4.0 and cam.audio is False
    limits = service.recorder.store.limits
    assert limits.camera_max_age_s == {"gate": 2 * 86400} and limits.keep_recent_s == 5400


def test_wiring_builds_nothing_when_disabled(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, None)
    ctx.config.recorder.enabled = False
    assert wiring.build(ctx) == []
