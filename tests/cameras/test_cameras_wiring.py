"""The cameras area as the daemon builds it: registry, snapshot, snapshot command, events."""

from __future__ import annotations

import queue
import time

from firmware import config
from firmware.bus import EventBus
from firmware.events import CameraStateEvent, Command, Snapshot
from firmware.wiring import Context
from firmware.wiring import cameras as wiring
from tests.waiting import wait_for


def build_area(tmp_path, cameras):
    cfg = config.parse({"node": {"id": "test-node", "data_dir": str(tmp_path)},
                        "cameras": cameras})
    bus = EventBus()
    ctx = Context(cfg, bus, lambda: {}, tmp_path)
    components = wiring.build(ctx)
    return ctx, bus, components


def collect(bus, kind):
    got: queue.SimpleQueue = queue.SimpleQueue()
    bus.subscribe(kind, got.put)
    return got


def next_from(q, predicate, timeout):
    """The first item on `q` that satisfies `predicate` (the ones before it are dropped)."""
    def match():
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                return None
            if predicate(item):
                return (item,)

    return wait_for(match, timeout, "a matching event")[0]


def test_registry_snapshot_and_command(tmp_path, rtsp_camera):
    ctx, bus, components = build_area(tmp_path, [
        {"name": "gate", "url": rtsp_camera.plain_url, "timeout_s": 10, "backoff_cap_s": 2},
        {"name": "lane", "url": "rtsp://127.0.0.1:1/none", "enabled": False},
    ])
    registry = ctx.shared["cameras"]
    assert registry.names() == ["gate"]
    assert registry.get("gate").main.url == rtsp_camera.plain_url
    states = collect(bus, CameraStateEvent)
    snaps = collect(bus, Snapshot)
    bus.start()
    (component,) = components
    component.service.idle_reprobe_s = 1.0  # nobody consumes this camera: the probe watches it
    component.start()
    try:
        # the probe finds an H.264 stream: the camera is online, with codec facts
        ev = next_from(states, lambda e: e.camera == "gate", 15)
        assert (ev.state, ev.reason) == ("online", "")
        health = component.health()["cameras"]["gate"]
        assert health["codec"] == "h264" and health["resolution"] == "640x360"
        assert health["kind"] == "rtsp" and health["state"] == "online"

        jpeg = ctx.shared["snapshot"]("gate", timeout=5.0)
        assert jpeg is not None and jpeg[:2] == b"\xff\xd8" and len(jpeg) > 2000
        assert ctx.shared["snapshot"]("nope") is None

        replies: queue.SimpleQueue = queue.SimpleQueue()
        bus.publish(Command(id="c1", action="snapshot", args={"camera": "gate", "timeout": 4},
                            key_id="k", reply=lambda ok, msg, data: replies.put((ok, msg, data))))
        bus.publish(Command(id="c2", action="siren", args={}, key_id="k",
                            reply=lambda *a: replies.put(("siren", a))))
        ok, msg, data = replies.get(timeout=10)
        assert ok, msg
        assert data["camera"] == "gate" and data["bytes"] > 2000
        snap = snaps.get(timeout=5)
        assert snap.camera == "gate" and snap.jpeg[:2] == b"\xff\xd8"

        bus.publish(Command(id="c3", action="snapshot", args={"camera": "nope"}, key_id="k",
                            reply=lambda ok, msg, data: replies.put((ok, msg, data))))
        ok, msg, _ = replies.get(timeout=5)
        assert not ok and "unknown camera 'nope'" in msg and "gate" in msg
        assert replies.empty()  # the siren command was left to its owner

        # with no consumer, the probe alone notices the camera going and coming back
        rtsp_camera.stop()
        # (a probe cut short by the stop may say "invalid data" first)
        next_from(states, lambda e: (e.state, e.reason) == (
            "offline", "connection refused: camera down or wrong port"), 15)
        rtsp_camera.start()
        ev = next_from(states, lambda e: e.camera == "gate", 15)
        assert ev.state == "online"
        assert component.health()["cameras"]["gate"]["reconnects"] == 1
        assert component.summary() == "cameras 1/1 online"
    finally:
        component.stop()
        bus.stop()


def test_reprobe_leaves_a_recording_camera_alone_and_health_says_audio(tmp_path):
    """The periodic re-probe is one more RTSP client of the camera: while the recorder has
    the main stream it is left out (what it would tell is known). Health says whether the
    camera's audio track is recorded."""
    from devtools.rtsp_camera import RtspTestCamera

    with RtspTestCamera(codec="h265", audio="pcmu", seconds=4) as cam:
        ctx, _bus, [component] = build_area(tmp_path, [
            {"name": "gate", "url": cam.url, "audio": False}])
        service = component.service
        service.reprobe_s = service.idle_reprobe_s = 0.3
        service.tick_s = 0.1
        registry = ctx.shared["cameras"]
        component.start()
        try:
            wait_for(lambda: "audio" in registry.health()["gate"], 30, "the probe's audio line")
            health = registry.health()["gate"]
            assert health["codec"] == "hevc"
            assert health["audio"] == ("audio pcm_mulaw 8 kHz: not recorded "
                                       "(audio = false in the camera's config)")
            registry.report_state("gate", "main", "online")  # the recorder has the stream
            time.sleep(0.5)  # on purpose: a probe already under way may still finish
            probes = service.probes
            time.sleep(1.5)  # on purpose: five reprobe periods in which nothing is probed
            assert service.probes == probes and service.skipped_probes >= 2
            registry.report_state("gate", "main", "offline", "exited")  # now it is needed
            wait_for(lambda: service.probes > probes, 10, "a probe once the stream is needed")
            assert service.probes > probes
        finally:
            component.stop(timeout=10)
