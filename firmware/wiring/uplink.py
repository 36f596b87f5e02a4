"""Wiring of the uplink area: live video and footage uploads for the Command Center.

- `live`, `live-stop`, `fetch` commands (verified by the mqtt area, `Command` on the bus)
  go to `uplink.service.Uplink`, which answers through `cmd.reply`;
- cameras come from the registry (`ctx.shared["cameras"]`): `main` is the recorded
  stream, `sub` the detection stream (the substream where the camera has one);
- the push state goes out retained on `<root>/live/<camera>` through the mqtt bridge;
- a fetch's range is protected in the recorder (`ctx.shared["recorder"]`) until its
  upload ends, and exported with `recorder.export` from the store's index (read-only);
- upload progress and results become `UploadEvent`s (durable, through the outbox).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drivers.cameras.base import StreamInput
from firmware.component import Component
from firmware.config import read_secret
from firmware.events import AlarmEvent, Command, UploadEvent
from firmware.wiring import Context
from recorder.export import ExportError, export, plan
from recorder.index import Index, IndexError_
from uplink.bandwidth import Bandwidth
from uplink.fetch import ExportFailed, Fetcher, Job
from uplink.live import LiveManager, Source
from uplink.service import ACTIONS, CameraAccess, Uplink
from uplink.targets import check_upload_url

log = logging.getLogger(__name__)

QUEUE_FILE = "uplink-queue.json"
WALL_FILE = "uplink-wall.json"  # the day's video wall bytes per camera


class UplinkLive(Component):
    """Ends live pushes at their ttl and keeps the bandwidth figures current."""

    name = "uplink"

    def __init__(self, uplink: Uplink) -> None:
        super().__init__()
        self.uplink = uplink

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            self.uplink.live.tick()
            self.beat()

    def close(self) -> None:
        self.uplink.live.stop_all("node stopping")

    def health(self) -> dict[str, Any]:
        live = self.uplink.live
        fetch = self.uplink.fetcher.health() if self.uplink.fetcher else {}
        return {"bytes": live.bytes_sent() + fetch.get("bytes", 0),
                "live_bytes": live.bytes_sent(), "upload_bytes": fetch.get("bytes", 0),
                "live_kbps": self.uplink.bandwidth.live_kbps(),
                "max_uplink_kbps": self.uplink.bandwidth.cap_kbps,
                "live": live.health(), "fetch": fetch}

    def summary(self) -> str:
        n = len(self.uplink.live.pushes)
        return f"{n} live" if n else ""


class UplinkFetch(Component):
    """Works the fetch queue, one upload at a time."""

    name = "uplink-fetch"
    stall_after_s = 300.0  # an export of a long range beats only when ffmpeg reports

    def __init__(self, fetcher: Fetcher) -> None:
        super().__init__()
        self.fetcher = fetcher

    def run(self) -> None:
        self.fetcher.run(self.stopping, self.beat)

    def health(self) -> dict[str, Any]:
        return self.fetcher.health()


def _cameras(ctx: Context) -> CameraAccess:
    registry = ctx.shared.get("cameras")
    configured = {c.name: c for c in ctx.config.cameras if c.enabled}

    def source(name: str, stream: str) -> Source:
        if registry is not None:
            cam = registry.get(name)
            inp: StreamInput = cam.main if stream == "main" else cam.detect
            codec = registry.health().get(name, {}).get("codec") if stream == "main" else None
            return Source(inp.ffmpeg_args(), codec)
        conf = configured[name]
        url = (conf.substream_url if stream == "sub" else None) or conf.url or ""
        return Source(StreamInput(url, {"rtsp_transport": "tcp"} if url.startswith("rtsp")
                                  else {}).ffmpeg_args())

    def state(name: str) -> tuple[str, str]:
        return registry.state(name) if registry is not None else ("unknown", "")

    return CameraAccess(names=lambda: list(configured), source=source, state=state)


def _index(root: Path) -> Index | None:
    db = root / Index.FILENAME
    if not db.is_file():
        return None
    try:
        return Index(db, readonly=True)
    except (IndexError_, sqlite3.Error) as exc:
        log.warning("uplink: recordings index unreadable: %s", exc)
        return None


def _fetcher(ctx: Context, bandwidth: Bandwidth, cameras: CameraAccess) -> Fetcher | None:
    settings = ctx.config.uplink
    recorder = ctx.shared.get("recorder")
    if not ctx.config.recorder.enabled or recorder is None:
        return None
    root = Path(ctx.config.recorder.path)

    def footage(camera: str, start: float, end: float) -> float:
        index = _index(root)
        if index is None:
            return 0.0
        try:
            return plan(index, camera, start, end).duration
        finally:
            index.close()

    def export_range(camera: str, start: float, end: float, out: Path) -> None:
        index = _index(root)
        if index is None:
            raise ExportFailed("no recordings index")
        try:
            p = plan(index, camera, start, end)
        finally:
            index.close()
        if not p.segments:
            raise ExportFailed("no footage in the range (deleted or never recorded)")
        try:
            export(root, p, out)
        except ExportError as exc:
            raise ExportFailed(str(exc)) from None

    def protect(protect_id: str, camera: str, start: float, end: float) -> None:
        recorder.protect(protect_id, start, end, (camera,))

    def on_event(phase: str, job: Job, fields: dict[str, Any]) -> None:
        ctx.bus.publish(UploadEvent(camera=job.camera, job=job.id, phase=phase,
                                    start=job.start, end=job.end, to=job.summary()["to"],
                                    detail=fields))

    return Fetcher(ctx.state_dir / QUEUE_FILE, ctx.state_dir / "uplink-spool",
                   bandwidth=bandwidth, cameras=cameras.names, footage=footage,
                   export=export_range, protect=protect, release=recorder.release,
                   check_url=lambda url: check_upload_url(url, allow_lan=settings.allow_lan),
                   # the clip server is the city's own (maybe over a VPN): trusted
                   check_config_url=lambda url: check_upload_url(url, allow_lan=True),
                   token=read_secret(settings.alarm_clip_token_file),
                   on_event=on_event, queue_max=settings.queue_max,
                   max_range_s=settings.max_fetch_s, attempts=settings.upload_attempts,
                   stall_s=settings.upload_stall_s, retry_min_s=settings.retry_min_s,
                   retry_max_s=settings.retry_max_s)


def _alarm_clips(ctx: Context, fetcher: Fetcher) -> Callable[[AlarmEvent], None]:
    """An alarm raised: queue its clip for every enabled camera (durably, at once)."""
    settings = ctx.config.uplink
    template = settings.alarm_clip_url or ""
    settle_s = ctx.config.recorder.segment_s + 2  # the post-roll's last segment is closed

    def on_alarm(event: AlarmEvent) -> None:
        if event.phase != "raised" or event.kind not in settings.alarm_clip_kinds:
            return
        end = event.ts + settings.alarm_clip_post_s
        for cam in ctx.config.cameras:
            if not cam.enabled:
                continue
            url = template.format(node=ctx.config.node.id, camera=cam.name,
                                  alarm_id=event.alarm_id, kind=event.kind)
            fetcher.add_alarm_clip(Job(f"{event.alarm_id}-{cam.name}", cam.name,
                                       event.ts - ctx.config.alarm.pre_s, end, url,
                                       kind="alarm", not_before=end + settle_s, max_tries=0,
                                       token=True))
    return on_alarm


def build(ctx: Context) -> list[Component]:
    settings = ctx.config.uplink
    node = ctx.config.node.id
    bandwidth = Bandwidth(settings.max_uplink_kbps)
    bridge = ctx.shared.get("mqtt")

    def publish_state(camera: str, doc: dict[str, Any]) -> None:
        if bridge is None:
            return
        from mqtt.link import encode
        from mqtt.topics import safe_level

        payload = {"v": 1, "node": node, **doc, "ts": time.time()}
        bridge.link.set_retained(bridge.topics.live(safe_level(camera)), encode(payload))

    estimates = {"main": settings.main_kbps, "sub": settings.sub_kbps}
    live = LiveManager(bandwidth, on_state=publish_state, estimate_kbps=estimates.__getitem__,
                       wall_state=ctx.state_dir / WALL_FILE)
    cameras = _cameras(ctx)
    fetcher = _fetcher(ctx, bandwidth, cameras)
    uplink = Uplink(settings, node, cameras, bandwidth, live, fetcher,
                    secret=read_secret(settings.media_secret_file))
    # A retained "live" left by a node that died (kill -9, power cut) would say so for
    # ever: every camera starts as "off" (one retained document per camera, overwritten).
    for camera in cameras.names():
        publish_state(camera, {"camera": camera, "state": "off", "kind": "live",
                               "stream": "main", "to": "", "since": None,
                               "started": time.time(), "until": None, "kbps": 0, "bytes": 0,
                               "reason": "node started"})
    for camera in settings.wall:
        problem = uplink.add_wall(camera, int(settings.wall_daily_mb * 1e6))
        if problem:
            log.error("uplink: video wall camera %s not pushed: %s", camera, problem)

    def on_command(cmd: Command) -> None:
        if cmd.action not in ACTIONS:
            return
        try:
            ok, message, data = uplink.handle(cmd.id, cmd.action, cmd.args)
        except Exception as exc:  # a bug must still answer the operator
            log.exception("uplink: command %s failed", cmd.id)
            ok, message, data = False, f"internal error: {exc!r}", {}
        cmd.reply(ok, message, data)

    ctx.bus.subscribe(Command, on_command, name="uplink:commands")
    if fetcher is not None and settings.alarm_clip_url:
        ctx.bus.subscribe(AlarmEvent, _alarm_clips(ctx, fetcher), name="uplink:alarm-clips")
    ctx.shared["uplink"] = uplink
    components: list[Component] = [UplinkLive(uplink)]
    if fetcher is not None:
        components.append(UplinkFetch(fetcher))
    return components
