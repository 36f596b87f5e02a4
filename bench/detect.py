#!/usr/bin/env python3
"""Detection bench: motion cost, raw inference, whole pipeline, cameras per node, RSS.

Prints `name<TAB>value<TAB>unit<TAB>note` lines. Everything is measured in this run on
this machine, each figure next to its baseline:

- motion ms/frame at the detect size (640x360) vs a naive full-resolution frame
  difference; motion recall / false rates on synthetic clips with ground truth;
- raw `invoke()` of the model (pose_detection.tflite, 224x224, num_threads from config);
- whole pipeline ms/frame on frames that all contain motion (a person walking) vs invoke;
- how many 5 fps cameras one node process holds in real time (real ffmpeg decoding of
  looping H.264 clips paced with -re, one shared interpreter), raising the count until
  frames are dropped;
- per-frame overhead of the pipeline on frames without motion (the detector never runs):
  the latest frame adopted by swap vs the former 345 KB copy per frame, and the letterbox
  prepared in a reused buffer vs a new zeroed array per call;
- RSS of a process running 2 camera pipelines with the model vs a bare process that
  imports the same libraries (numpy, OpenCV, tflite) and loads nothing.

Wall time on a shared machine varies with load: CPU seconds are printed next to it.
usage: .venv/bin/python bench/detect.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MODEL = ROOT / ".cache" / "models" / "pose_detection.tflite"

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from drivers.cameras.base import StreamInput  # noqa: E402
from inference.detector import Detector  # noqa: E402
from inference.frames import decode_file  # noqa: E402
from inference.motion import MotionDetector  # noqa: E402
from inference.pipeline import CameraPipeline, single_threaded_opencv  # noqa: E402
from inference.settings import DetectSettings  # noqa: E402
from tests.synthetic import encode, make_clip  # noqa: E402


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    print(f"{name}\t{value:.4g}\t{unit}\t{note}", flush=True)


def timed(fn, n: int) -> tuple[float, float]:
    """(median wall ms, mean CPU ms) of `n` calls."""
    walls = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append((time.perf_counter() - t0) * 1000)
    return statistics.median(walls), (time.process_time() - cpu0) * 1000 / n


def decode(path: Path, fps: float = 5.0) -> list[tuple[float, np.ndarray]]:
    return decode_file(path, 640, 360, fps)


# -- motion ----------------------------------------------------------------------------
def naive_motion(prev: np.ndarray, grey: np.ndarray) -> int:
    """Baseline: frame difference at full resolution (blur, threshold, contours)."""
    a = cv2.GaussianBlur(prev, (21, 21), 0)
    b = cv2.GaussianBlur(grey, (21, 21), 0)
    mask = (cv2.absdiff(a, b) > 25).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return len(contours)


def bench_motion(tmp: Path) -> None:
    clip = make_clip(seconds=10, fps=5, blobs=2, noise=4.0)
    greys = [g for _, g in ((0, f) for f in clip.frames)]
    md = MotionDetector(640, 360)
    it = iter(range(10**9))
    wall, cpu = timed(lambda: md.update(greys[next(it) % len(greys)]), 300)
    emit("motion_ms_per_frame", wall, "ms", f"640x360 grey, CPU {cpu:.3f} ms")
    it2 = iter(range(10**9))

    def naive() -> None:
        i = next(it2)
        naive_motion(greys[i % len(greys)], greys[(i + 1) % len(greys)])

    wall_b, cpu_b = timed(naive, 300)
    emit("motion_baseline_ms_per_frame", wall_b, "ms",
         f"naive full-res frame difference, CPU {cpu_b:.3f} ms")

    def rates(kind: str, **kwargs) -> None:
        c = make_clip(seconds=10, fps=5, **kwargs)
        greys = [f for _, f in decode(encode(c.frames, tmp / f"{kind}.mp4", fps=5))]
        det = MotionDetector(640, 360)
        hits = total = false = regions = frames_moving = 0
        for i, (yuv, boxes) in enumerate(zip(greys, c.truth, strict=True)):
            found = det.update(yuv[:360])
            if i < 3:
                continue
            regions += len(found)
            frames_moving += bool(found)
            for b in boxes:
                total += 1
                hits += any(b[0] < r[2] and r[0] < b[2] and b[1] < r[3] and r[1] < b[3]
                            for r in found)
            false += sum(not any(b[0] < r[2] and r[0] < b[2] and b[1] < r[3] and r[1] < b[3]
                                 for b in boxes) for r in found)
        n = len(greys) - 3
        if total:
            emit(f"motion_recall_{kind}", hits / total, "ratio", "objects found per frame")
            emit(f"motion_false_regions_{kind}", false / max(regions, 1), "ratio",
                 "regions on no object (trails)")
        else:
            emit(f"motion_false_frames_{kind}", frames_moving / n, "ratio",
                 "frames with motion where nothing moves")

    rates("blobs", blobs=2, noise=4.0)
    rates("blobs_dusk", blobs=2, noise=4.0, light_ramp=(1.0, 0.35))
    rates("dusk_ramp", light_ramp=(1.0, 0.3))
    rates("ir_switch", ir_switch_at=5.0)
    rates("noise10", noise=10.0)


# -- inference and pipeline ------------------------------------------------------------
def bench_pipeline(scene: Path, threads: int) -> float:
    det = Detector(MODEL, num_threads=threads, min_score=0.4)
    tensor = det.prepare(np.zeros((224, 224, 3), np.uint8))
    for _ in range(10):
        det.invoke(tensor)
    inv_wall, inv_cpu = timed(lambda: det.invoke(tensor), 100)
    emit("invoke_ms", inv_wall, "ms", f"224x224 float, {threads} thread(s), CPU {inv_cpu:.2f} ms")
    other = 2 if threads == 1 else 1
    alt = Detector(MODEL, num_threads=other)
    for _ in range(10):
        alt.invoke(tensor)
    alt_wall, alt_cpu = timed(lambda: alt.invoke(tensor), 100)
    emit(f"invoke_ms_{other}_threads", alt_wall, "ms", f"baseline, CPU {alt_cpu:.2f} ms")
    # a person in view the whole clip: motion in every frame
    from devtools.scene import render_scene

    walk = render_scene(scene.with_name("walk.mp4"), seconds=12, size=(640, 360), fps=10,
                        walk=(0.0, 12.0))
    frames = decode(walk)
    pipe = CameraPipeline("bench", DetectSettings(), det, 640, 360)
    for ts, yuv in frames[:3]:
        pipe.process(yuv, ts)
    walls, invokes, cpu_p, cpu_i = [], [], 0.0, 0.0
    runs0, motion0 = pipe.stats.detector_runs, pipe.stats.motion_frames
    for ts, yuv in frames[3:]:  # alternate with raw invokes: both see the same load
        c0, t0 = time.process_time(), time.perf_counter()
        pipe.process(yuv, ts)
        walls.append((time.perf_counter() - t0) * 1000)
        c1, t1 = time.process_time(), time.perf_counter()
        det.invoke(tensor)
        invokes.append((time.perf_counter() - t1) * 1000)
        cpu_p, cpu_i = cpu_p + c1 - c0, cpu_i + time.process_time() - c1
    n = len(walls)
    runs = (pipe.stats.detector_runs - runs0) / n
    wall, inv = statistics.median(walls), statistics.median(invokes)
    emit("pipeline_ms_per_frame", wall, "ms",
         f"motion in {(pipe.stats.motion_frames - motion0) / n:.0%} of {n} frames, "
         f"{runs:.2f} detector runs/frame (each {pipe.stats.as_dict()['inference_ms_p50']} ms "
         f"in the pipeline), CPU {cpu_p * 1000 / n:.2f} ms")
    emit("pipeline_over_invoke", wall / inv, "x",
         f"target <= 1.15; invoke interleaved {inv:.2f} ms; CPU ratio {cpu_p / cpu_i:.2f}")
    return inv_wall


def bench_overhead() -> None:
    """What the pipeline costs per frame besides the model, on the hot path's copies."""
    class NoModel:
        input_size, min_score = 224, 0.4

        def detect(self, image):
            return []

    settings = DetectSettings(tamper={"enabled": False})
    pipe = CameraPipeline("bench", settings, NoModel(), 640, 360)
    rng = np.random.default_rng(0)
    grey = cv2.GaussianBlur(rng.integers(0, 256, (360, 640), np.uint8), (0, 0), 2)
    frames = [cv2.cvtColor(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB), cv2.COLOR_RGB2YUV_I420)
              for _ in range(3)]  # a pool of three buffers, as FramePool has
    spare = np.empty_like(frames[0])
    for i in range(20):
        pipe.process(frames[i % 3], i / 5)
    it = iter(range(10**9))

    def swapped() -> None:
        i = next(it)
        pipe.process(frames[i % 3], i / 5)
        frames[i % 3] = pipe.adopt(frames[i % 3])

    def copied() -> None:  # what process() did before: a copy into the latest frame
        i = next(it)
        pipe.process(frames[i % 3], i / 5)
        np.copyto(spare, frames[i % 3])

    walls_s, walls_c = [], []
    for _ in range(5):  # interleaved rounds: both see the same load
        walls_s.append(timed(swapped, 200))
        walls_c.append(timed(copied, 200))
    ws, cs = min(w for w, _ in walls_s), min(c for _, c in walls_s)
    wc, cc = min(w for w, _ in walls_c), min(c for _, c in walls_c)
    emit("pipeline_ms_no_motion", ws, "ms",
         f"latest frame adopted by swap, CPU {cs:.3f} ms; baseline with the former copy "
         f"per frame: {wc:.3f} ms, CPU {cc:.3f} ms")
    yuv = frames[0]

    def letterbox_new() -> None:
        pipe._detect_in(yuv, (0, -140, 640))

    def letterbox_old() -> None:  # the former code: a new zeroed 640x640x3 array per call
        rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420, dst=pipe._rgb)
        image = np.zeros((640, 640, 3), np.uint8)
        image[140:500] = rgb
        pipe.detector.detect(image)

    lb_new, lb_old = [], []
    for _ in range(5):
        lb_new.append(timed(letterbox_new, 100))
        lb_old.append(timed(letterbox_old, 100))
    emit("letterbox_ms", min(w for w, _ in lb_new), "ms",
         f"640x360 into 640x640, reused buffer, CPU {min(c for _, c in lb_new):.3f} ms; "
         f"baseline new zeroed array per call: {min(w for w, _ in lb_old):.3f} ms, "
         f"CPU {min(c for _, c in lb_old):.3f} ms")


# -- cameras in real time --------------------------------------------------------------
def run_cameras(scene: Path, count: int, seconds: float, threads: int) -> dict:
    from firmware.bus import EventBus
    from firmware.wiring.detect import DetectService

    settings = DetectSettings(enabled=True, model=MODEL, fps=5, num_threads=threads,
                              hwaccel="none")
    sources = {f"cam{i}": StreamInput(str(scene), {"stream_loop": -1, "re": True,
                                                   "ss": f"{(i * 1.7) % 10:.1f}"})
               for i in range(count)}
    bus = EventBus()
    bus.start()
    service = DetectService(bus, settings, sources)
    me = psutil.Process()
    service.start()
    time.sleep(3.0)  # start-up: model, ffmpeg, motion warm-up
    def counts():
        return {n: (r.frames, r.pool.dropped) for n, r in service.readers.items()}
    def cpu_total() -> float:
        total = sum(me.cpu_times()[:2])
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += sum(child.cpu_times()[:2])
        return total
    start, cpu_start, t0 = counts(), cpu_total(), time.monotonic()
    time.sleep(seconds)
    end, cpu_end, elapsed = counts(), cpu_total(), time.monotonic() - t0
    health = service.health()
    service.stop()
    bus.stop()
    got = sum(end[n][0] - start[n][0] for n in end)
    dropped = sum(end[n][1] - start[n][1] for n in end)
    return {"frames": got, "dropped": dropped, "expected": count * 5 * elapsed,
            "cpu": (cpu_end - cpu_start) / elapsed, "runs": health["detector_runs"],
            "skipped": health["skipped_by_motion"], "processed": health["frames_in"]}


def bench_cameras(scene: Path, threads: int, seconds: float, counts: list[int]) -> None:
    held = 0
    for count in counts:
        r = run_cameras(scene, count, seconds, threads)
        drop = r["dropped"] / max(r["frames"], 1)
        realtime = r["frames"] >= 0.9 * r["expected"] and drop <= 0.02
        emit(f"cameras_{count}_dropped", drop, "ratio",
             f"{r['frames']}/{r['expected']:.0f} frames decoded, CPU {r['cpu']:.2f} cores "
             f"(node + ffmpeg), detector ran on {r['runs'] / max(r['processed'], 1):.0%} "
             f"of frames{'' if realtime else ', NOT real time'}")
        if not realtime:
            break
        held = count
    emit("cameras_held_5fps", held, "cameras",
         f"largest count tried ({', '.join(map(str, counts))}) with <= 2% frames dropped; "
         "target >= 8")


# -- memory ----------------------------------------------------------------------------
def child_rss(mode: str, scene: str, threads: int) -> None:
    """Run in a subprocess: print JSON with this process's RSS after settling."""
    if mode == "baseline":
        import tflite_runtime.interpreter  # noqa: F401

        time.sleep(1.0)
        children = children_uss = 0
    else:
        from firmware.bus import EventBus
        from firmware.wiring.detect import DetectService

        settings = DetectSettings(enabled=True, model=MODEL, fps=5, num_threads=threads,
                                  hwaccel="none")
        sources = {f"cam{i}": StreamInput(scene, {"stream_loop": -1, "re": True})
                   for i in range(2)}
        bus = EventBus()
        bus.start()
        service = DetectService(bus, settings, sources)
        service.start()
        time.sleep(8.0)
        kids = psutil.Process().children(recursive=True)
        children = sum(c.memory_info().rss for c in kids)
        children_uss = sum(c.memory_full_info().uss for c in kids)
        frames = service.health()["frames_in"]
        assert frames > 0, "pipelines did not run"
    me = psutil.Process()
    print(json.dumps({"rss": me.memory_info().rss, "uss": me.memory_full_info().uss,
                      "children": children, "children_uss": children_uss}))
    os._exit(0)


def bench_rss(scene: Path, threads: int) -> None:
    def measure(mode: str) -> dict:
        out = subprocess.run([sys.executable, __file__, "--child", mode, "--scene", str(scene),
                              "--threads", str(threads)], capture_output=True, text=True,
                             check=True, timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1])

    base, full = measure("baseline"), measure("pipelines")
    emit("rss_2_cameras_mb", full["rss"] / 2**20, "MB",
         f"node process with model and 2 pipelines (USS {full['uss'] / 2**20:.0f} MB); "
         f"target <= 150; 2 ffmpeg decoders besides: RSS {full['children'] / 2**20:.0f} MB, "
         f"USS {full['children_uss'] / 2**20:.0f} MB")
    emit("rss_baseline_mb", base["rss"] / 2**20, "MB",
         "bare process importing numpy, OpenCV, tflite_runtime")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter camera trials")
    parser.add_argument("--threads", type=int, default=DetectSettings().num_threads,
                        help="interpreter threads (default: the config default)")
    parser.add_argument("--cameras", default="8,12,16", help="camera counts to try")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scene", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_rss(args.child, args.scene, args.threads)
        return 0
    single_threaded_opencv()  # as the node does (inference/service.py)
    if not MODEL.is_file():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch-test-models"),
                        str(MODEL.parent)], check=True)
    from devtools.scene import render_scene

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        scene = render_scene(tmp / "scene.mp4", seconds=11, size=(640, 360), fps=10,
                             walk=(2.0, 8.0))
        emit("load_average_1m", os.getloadavg()[0], "procs", f"{os.cpu_count()} CPUs")
        bench_motion(tmp)
        bench_overhead()
        bench_pipeline(scene, args.threads)
        bench_cameras(scene, args.threads, 5.0 if args.quick else 10.0,
                      [int(c) for c in args.cameras.split(",")])
        bench_rss(scene, args.threads)
        emit("load_average_1m_end", os.getloadavg()[0], "procs", "others share this machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())
