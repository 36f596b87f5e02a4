"""CPU and memory of one supervised RTSP camera against the bare ffmpeg process alone.

Both phases read the same RTSP test camera (720p15 H.264 street scene, over TCP) and
stream-copy it into 2 s MPEG-TS segments, for `--seconds` each:

- bare: ``ffmpeg ... -c copy -f segment`` started with subprocess, nothing else;
- supervised: the same ffmpeg (plus ``-progress pipe:1``) under `ManagedProcess`, its
  progress parsed by `FfmpegProgress`, reported to the `CameraRegistry`, with the
  cameras component (`CameraService`: probe, state refresh) running.

CPU is user+system seconds from /proc (psutil) of the ffmpeg child and, separately, of
this Python process over the same window (the supervisor's own cost); RSS is sampled
every 0.5 s and the peak reported. Prints ``name<TAB>value<TAB>unit<TAB>note`` lines.

    .venv/bin/python bench/cameras.py [--seconds 20] [--cameras 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.rtsp_camera import RtspTestCamera
from drivers.cameras.base import mask_credentials
from drivers.cameras.progress import PROGRESS_ARGS, FfmpegProgress
from drivers.cameras.registry import CameraRegistry
from drivers.cameras.rtsp import RtspCamera
from drivers.cameras.service import CameraService
from drivers.managed import ManagedProcess
from drivers.process import spawn, terminate
from firmware.wiring.cameras import CamerasComponent


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    print(f"{name}\t{value:.3f}\t{unit}\t{note}", flush=True)


def cpu_of(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


class Sampler:
    """Last CPU seconds and peak RSS of a set of pids, sampled while they run."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.rss: dict[int, int] = {}

    def sample(self, pids: list[int]) -> None:
        for pid in pids:
            try:
                p = psutil.Process(pid)
                with p.oneshot():
                    self.cpu[pid] = cpu_of(p)
                    self.rss[pid] = max(self.rss.get(pid, 0), p.memory_info().rss)
            except psutil.Error:
                continue

    @property
    def total_cpu(self) -> float:
        return sum(self.cpu.values())

    @property
    def peak_rss(self) -> int:
        return max(self.rss.values(), default=0)


def segment_args(out: Path, tag: str) -> list[str]:
    return ["-map", "0:v", "-c", "copy", "-f", "segment", "-segment_time", "2",
            "-reset_timestamps", "1", str(out / f"{tag}-%03d.ts")]


def bare(url: str, seconds: float, out: Path) -> tuple[float, int, float]:
    me = psutil.Process()
    cam = RtspCamera("bare", url)
    args = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
            *cam.main.ffmpeg_args(), *segment_args(out, "bare")]
    sampler = Sampler()
    py0 = cpu_of(me)
    proc = spawn(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sampler.sample([proc.pid])
        time.sleep(0.5)
    sampler.sample([proc.pid])
    py = cpu_of(me) - py0
    terminate(proc)
    return sampler.total_cpu, sampler.peak_rss, py


def supervised(url: str, seconds: float, out: Path, cameras: int) -> tuple[float, int, float,
                                                                          int, int]:
    me = psutil.Process()
    rss0 = me.memory_info().rss
    cams = [RtspCamera(f"cam{i}", url, timeout_s=5) for i in range(cameras)]
    registry = CameraRegistry(cams, expected_fps={c.name: 15 for c in cams})
    service = CamerasComponent(CameraService(registry))
    procs = []
    for cam in cams:
        def make_args(cam=cam) -> list[str]:
            return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                    *cam.main.ffmpeg_args(), *PROGRESS_ARGS, *segment_args(out, cam.name)]

        holder: list[ManagedProcess] = []
        progress = FfmpegProgress(lambda n, name=cam.name, h=holder: (
            h[0].beat(), registry.report_frames(name, "main", n)))
        proc = ManagedProcess(
            f"{cam.name}-main", make_args, on_start=progress.attach, stdout=subprocess.PIPE,
            on_state=lambda s, r, name=cam.name: registry.report_state(name, "main", s, r),
            redact=mask_credentials, ready=cam.reachable)
        holder.append(proc)
        procs.append(proc)
    sampler = Sampler()
    py0 = cpu_of(me)
    service.start()
    for proc in procs:
        proc.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sampler.sample([p.pid for p in procs if p.pid])
        time.sleep(0.5)
    sampler.sample([p.pid for p in procs if p.pid])
    py = cpu_of(me) - py0
    rss_delta = me.memory_info().rss - rss0
    online = sum(h["state"] == "online" for h in registry.health().values())
    for proc in procs:
        proc.stop()
    service.stop()
    return sampler.total_cpu, sampler.peak_rss, py, rss_delta, online


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    p.add_argument("--cameras", type=int, default=1, help="supervised cameras (same stream)")
    opts = p.parse_args()
    mb = 1024 * 1024
    with tempfile.TemporaryDirectory(prefix="ronda-bench-cameras-") as tmp, \
            RtspTestCamera(size=(1280, 720), fps=15, seconds=20) as server:
        out = Path(tmp)
        emit("stream", 720, "p", "RTSP/TCP H.264 1280x720 15 fps, keyframe every 1 s, 2 s "
                                 "segments")
        b_cpu, b_rss, b_py = bare(server.plain_url, opts.seconds, out)
        s_cpu, s_rss, s_py, s_rss_py, online = supervised(server.plain_url, opts.seconds, out,
                                                          opts.cameras)
        n = opts.cameras
        per_min = 60.0 / opts.seconds
        emit("bare_ffmpeg_cpu", b_cpu * per_min, "cpu-s/min", "baseline: ffmpeg alone")
        emit("bare_python_cpu", b_py * per_min, "cpu-s/min", "this process idling (baseline)")
        emit("supervised_ffmpeg_cpu", s_cpu / n * per_min, "cpu-s/min",
             f"per camera, with -progress ({n} camera(s))")
        emit("supervisor_python_cpu", s_py / n * per_min, "cpu-s/min",
             "per camera: ManagedProcess, progress + stderr readers, registry, probe")
        emit("supervised_total_cpu", (s_cpu + s_py) / n * per_min, "cpu-s/min", "per camera")
        emit("overhead_ratio", (s_cpu + s_py) / n / max(b_cpu, 1e-6), "x",
             "supervised total / bare ffmpeg")
        emit("bare_ffmpeg_rss", b_rss / mb, "MB", "peak")
        emit("supervised_ffmpeg_rss", s_rss / mb, "MB", "peak, one child")
        emit("supervisor_python_rss_delta", s_rss_py / mb, "MB",
             f"growth of this process over the supervised phase ({n} camera(s))")
        emit("cameras_online", online, "count", f"of {n} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
