"""Recording cost: the recorder (daemon side + its ffmpeg children) against bare
``ffmpeg -c copy -f segment`` of the same input, side by side in the same run; and bytes on disk
against the video bytes of the stream.

    .venv/bin/python bench/recording.py                  # 4 cameras, 720p15, 30 s windows
    .venv/bin/python bench/recording.py --cameras 4 --seconds 60
    .venv/bin/python bench/recording.py --soak 50        # + 50 kill -9 rounds

Then the audio phase: a camera with a G.711 track, recorded video only and with its sound
(AAC) by two recorders side by side, next to bare ffmpeg: ``audio_cost_cpu`` is what the
sound adds, per camera and minute.

Prints ``name<TAB>value<TAB>unit<TAB>note`` lines. CPU seconds come from the kernel's
accounting per thread (/proc/*/task/*/schedstat, nanoseconds) over a steady window
after start-up; the bench's own threads are left out of the daemon side. Targets:
cpu_ratio <= 1.05, bytes_ratio <= 1.02.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.scene import render_scene  # noqa: E402
from drivers.cameras.base import StreamInput  # noqa: E402
from drivers.process import spawn, terminate  # noqa: E402
from recorder.camera import FRAGMENTED_MP4  # noqa: E402
from recorder.recorder import Recorder  # noqa: E402
from recorder.store import Limits, Store  # noqa: E402


def emit(name: str, value: float | int | str, unit: str, note: str = "") -> None:
    print(f"{name}\t{value}\t{unit}\t{note}", flush=True)


class RssSampler:
    """Peak of (RSS of `pids()`) summed, sampled every second on a thread."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self.pids = pids
        self.peak = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            total = 0
            for pid in self.pids():
                with contextlib.suppress(psutil.Error):
                    total += psutil.Process(pid).memory_info().rss
            self.peak = max(self.peak, total)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()


def video_bytes(files: list[Path]) -> int:
    """Sum of the video packets' sizes in `files` (the stream's own bytes)."""
    total = 0
    for chunk in range(0, len(files), 50):
        args = ["ffprobe", "-v", "error", "-select_streams", "v:0",
                "-show_entries", "packet=size", "-of", "csv=p=0"]
        for f in files[chunk:chunk + 50]:
            out = subprocess.run([*args, str(f)], capture_output=True, text=True, check=False)
            total += sum(int(x) for x in out.stdout.split() if x.strip().isdigit())
    return total


WARM_S = 3.0  # start-up (input probing, first fragments) is left out of the window


def task_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of `pid`, from schedstat (nanoseconds, not ticks)."""
    out = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError), \
                    open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                out[int(tid)] = int(fh.read().split()[0]) / 1e9
    return out


def ffmpeg_cpu(pids: list[int]) -> float:
    """CPU seconds so far of the live processes `pids` (all their threads)."""
    return sum(sum(task_cpu(pid).values()) for pid in pids)


BENCH_THREADS = ("MainThread", "rss-sampler")


def daemon_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's threads, by name, the bench's own left out."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid, seconds in task_cpu(os.getpid()).items():
        name = names.get(tid, f"tid{tid}")
        if name not in BENCH_THREADS:
            out[name] = seconds
    return out


def spent(before: dict[str, float], after: dict[str, float], prefix: str = "") -> float:
    return sum(v - before.get(k, 0.0) for k, v in after.items() if k.startswith(prefix))


def compare(source: StreamInput, cameras: int, seconds: float, segment_s: float,
            work: Path) -> tuple[dict[str, float], dict[str, float]]:
    """N bare segmenting ffmpegs and the Recorder with N cameras, side by side (same
    input, same moment, same machine load); CPU over a steady window of `seconds`."""
    procs = []
    for i in range(cameras):
        d = work / "bare" / f"cam{i}"
        d.mkdir(parents=True)
        procs.append(spawn(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
             "-i", source.url, "-map", "0:v:0", "-c", "copy", "-f", "segment",
             "-segment_time", f"{segment_s:g}", "-segment_format", "mp4",
             "-segment_format_options", FRAGMENTED_MP4, "-reset_timestamps", "1",
             str(d / "%06d.mp4")], stderr=subprocess.DEVNULL))
    bare_pids = [p.pid for p in procs]
    out = work / "rec"
    rec = Recorder(out, {f"cam{i}": source for i in range(cameras)}, segment_s=segment_s,
                   limits=Limits(quota=100 * 2**30))
    stop = threading.Event()
    runner = threading.Thread(target=rec.run, args=(stop,), name="bench-recorder",
                              daemon=True)

    def rec_pids() -> list[int]:
        me = psutil.Process()
        return [me.pid] + [c.pid for c in me.children()
                           if c.name() == "ffmpeg" and c.pid not in bare_pids]

    with RssSampler(lambda: bare_pids) as bare_rss, RssSampler(rec_pids) as rec_rss:
        runner.start()
        time.sleep(WARM_S)
        kids = rec_pids()[1:]
        bare0, self0, kids0 = ffmpeg_cpu(bare_pids), daemon_cpu(), ffmpeg_cpu(kids)
        time.sleep(seconds)
        bare1, self1, kids1 = ffmpeg_cpu(bare_pids), daemon_cpu(), ffmpeg_cpu(kids)
        stop.set()
        for p in procs:
            terminate(p, timeout=10)
        runner.join(30)
    bare_files = sorted((work / "bare").rglob("*.mp4"))
    base = {"cpu": bare1 - bare0, "rss": bare_rss.peak,
            "disk": sum(f.stat().st_size for f in bare_files), "video": video_bytes(bare_files)}
    files = sorted(out.glob("*/*/*/*.mp4"))
    index = sum(f.stat().st_size for f in out.glob("index.sqlite3*"))
    recorded = {"cpu": kids1 - kids0, "daemon": spent(self0, self1),
                "supervision": spent(self0, self1, "rec:"),
                "rss": rec_rss.peak, "segments": len(files), "index": index,
                "disk": sum(f.stat().st_size for f in files) + index,
                "video": video_bytes(files), "restarts": sum(
                    c.process.restarts for c in rec.cameras.values())}
    return base, recorded


def with_g711(scene: Path, out: Path) -> Path:
    """`scene` with a G.711 A-law track (8 kHz mono, a tone), as a cheap camera sends."""
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(scene), "-f",
                    "lavfi", "-i", "sine=frequency=440:sample_rate=8000", "-shortest",
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "pcm_alaw",
                    "-ac", "1", str(out)], check=True)
    return out


def audio_cost(source: StreamInput, cameras: int, seconds: float, segment_s: float,
               work: Path) -> dict[str, float]:
    """The same G.711 camera recorded video only (audio = false) and with its audio (to
    AAC), by two recorders side by side, next to bare ffmpeg copying the video: what
    recording sound costs."""
    bare = [spawn(["ffmpeg", "-nostdin", "-loglevel", "error", *source.ffmpeg_args(),
                   "-map", "0:v:0", "-c", "copy", "-f", "segment", "-segment_time",
                   f"{segment_s:g}", "-segment_format", "mp4", "-segment_format_options",
                   FRAGMENTED_MP4, "-reset_timestamps", "1",
                   str(work / f"bare-audio-{i}-%06d.mp4")], stderr=subprocess.DEVNULL)
            for i in range(cameras)]
    names = [f"cam{i}" for i in range(cameras)]
    recs = {audio: Recorder(work / ("with-audio" if audio else "video-only"),
                            dict.fromkeys(names, source), segment_s=segment_s,
                            limits=Limits(quota=100 * 2**30),
                            audio=dict.fromkeys(names, audio))
            for audio in (False, True)}
    stop = threading.Event()
    runners = [threading.Thread(target=r.run, args=(stop,), daemon=True) for r in recs.values()]
    for runner in runners:
        runner.start()
    time.sleep(WARM_S + 2)

    def kids(rec: Recorder) -> list[int]:
        return [pid for c in rec.cameras.values() if (pid := c.process.pid) is not None]

    pids = {audio: kids(rec) for audio, rec in recs.items()}
    bare_pids = [p.pid for p in bare]
    before = {audio: ffmpeg_cpu(p) for audio, p in pids.items()}
    bare0 = ffmpeg_cpu(bare_pids)
    time.sleep(seconds)
    after = {audio: ffmpeg_cpu(p) for audio, p in pids.items()}
    bare1 = ffmpeg_cpu(bare_pids)
    stop.set()
    for proc in bare:
        terminate(proc, timeout=10)
    for runner in runners:
        runner.join(30)
    disk = {audio: sum(f.stat().st_size for f in (work / ("with-audio" if audio else
                                                          "video-only")).glob("*/*/*/*.mp4"))
            for audio in (False, True)}
    return {"bare_cpu": bare1 - bare0, "video_only_cpu": after[False] - before[False],
            "with_audio_cpu": after[True] - before[True], "video_only_disk": disk[False],
            "with_audio_disk": disk[True], "restarts": sum(
                c.process.restarts for r in recs.values() for c in r.cameras.values())}


def soak(source: StreamInput, rounds: int, work: Path) -> None:
    """kill -9 the recorder (or one of its ffmpegs, then it) at random moments; after
    each, reopen (recovery) and check index == disk and that every new segment plays."""
    from recorder import probe

    rng = random.Random(7)
    store = work / "soak"
    checked: set[str] = set()
    worst_lost = 0
    t0 = time.monotonic()
    for _ in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-m", "devtools.recorder", "--path", str(store), "--segment-s", "1",
             "--quota", "1G", "--camera", f"a={source.url}", "--camera", f"b={source.url}",
             "--input-option", "re=", "--input-option", "stream_loop=-1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 3.0))
        kids = [c for c in psutil.Process(proc.pid).children() if c.name() == "ffmpeg"]
        if kids and rng.random() < 0.4:
            rng.choice(kids).send_signal(signal.SIGKILL)
            time.sleep(rng.uniform(0.1, 1.5))
        before = {p.stat().st_ino: p.relative_to(store).parts[0]
                  for p in store.rglob("*.mp4") if p.exists()}
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        psutil.wait_procs(kids, timeout=5)
        s = Store(store, Limits(quota=2**30))
        s.open()
        assert s.index is not None
        segs = s.index.segments()
        s.close()
        on_disk = {str(p.relative_to(store)) for p in store.glob("*/*/*/*.mp4")}
        assert {x.path for x in segs} == on_disk, "index != disk"
        assert not list(store.glob("*/.incoming/*")), "leftovers in .incoming"
        kept = {(store / x.path).stat().st_ino for x in segs}
        lost: dict[str, int] = {}
        for ino, cam in before.items():
            if ino not in kept:
                lost[cam] = lost.get(cam, 0) + 1
        worst_lost = max([worst_lost, *lost.values()])
        for x in segs:
            if x.path not in checked:
                assert probe.decodes(store / x.path), x.path
                checked.add(x.path)
    emit("soak_rounds", rounds, "rounds", "kill -9 at random moments, all invariants held")
    emit("soak_segments_checked", len(checked), "segments", "every one decodes")
    emit("soak_max_lost_per_camera", worst_lost, "segments", "per kill; target <= 1")
    emit("soak_wall", round(time.monotonic() - t0, 1), "s", "")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30.0, help="per phase")
    p.add_argument("--segment-s", type=float, default=10.0)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--soak", type=int, default=0, metavar="ROUNDS",
                   help="also run ROUNDS kill -9 rounds (50 in the acceptance soak)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = p.parse_args()
    width, height = map(int, args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="ronda-bench-rec-", dir=os.environ.get("BENCH_DIR")))
    try:
        scene = render_scene(work / "scene.mp4", seconds=20, size=(width, height), fps=15)
        source = StreamInput(url=str(scene), options={"re": None, "stream_loop": -1})
        base, rec = compare(source, args.cameras, args.seconds, args.segment_s, work)
        daemon_side = rec["daemon"]
        total = rec["cpu"] + daemon_side
        note = (f"{args.cameras} cameras {args.size}@15, {args.seconds:g} s window, "
                "side by side with the recorder")
        emit("bare_ffmpeg_cpu", round(base["cpu"], 3), "cpu-s", f"baseline, {note}")
        emit("recorder_ffmpeg_cpu", round(rec["cpu"], 3), "cpu-s", "the recorder's ffmpegs")
        emit("recorder_daemon_cpu", round(daemon_side, 3), "cpu-s",
             "Python side: the recorder's threads (the bench's own left out)")
        emit("recorder_supervision_cpu", round(rec["supervision"], 3), "cpu-s",
             "of which ManagedProcess threads (drivers/managed.py: exit and stall watch)")
        emit("cpu_ratio", round(total / base["cpu"], 3) if base["cpu"] else "nan", "x",
             "recorder / bare ffmpeg; target <= 1.05")
        emit("cpu_ratio_recorder_code", round((total - rec["supervision"]) / base["cpu"], 3)
             if base["cpu"] else "nan", "x", "the same without the ManagedProcess threads")
        emit("bare_rss_peak", round(base["rss"] / 2**20, 1), "MiB", "sum of ffmpegs")
        emit("recorder_rss_peak", round(rec["rss"] / 2**20, 1), "MiB",
             "bench process (Python, recorder) + ffmpegs")
        emit("recorder_restarts", rec["restarts"], "restarts", "should be 0")
        emit("recorder_disk_bytes", int(rec["disk"]), "B",
             f"{rec['segments']} segments + index {int(rec['index'])} B")
        emit("recorder_video_bytes", int(rec["video"]), "B", "video packets in the segments")
        emit("bytes_ratio", round(rec["disk"] / rec["video"], 4) if rec["video"] else "nan",
             "x", "disk (segments + index) / stream bytes; target <= 1.02")
        emit("bytes_ratio_segments", round((rec["disk"] - rec["index"]) / rec["video"], 4)
             if rec["video"] else "nan", "x", "segments only (the index is ~fixed size)")
        emit("bare_bytes_ratio", round(base["disk"] / base["video"], 4)
             if base["video"] else "nan", "x", "same for bare ffmpeg")
        sound = audio_cost(StreamInput(str(with_g711(scene, work / "g711.mkv")),
                                       {"re": None, "stream_loop": -1}),
                           args.cameras, args.seconds, args.segment_s, work)
        per_min = 60 / args.seconds / args.cameras
        emit("audio_bare_ffmpeg_cpu", round(sound["bare_cpu"], 3), "cpu-s",
             "baseline of the audio phase: bare ffmpeg copying the video of a G.711 camera")
        emit("audio_off_ffmpeg_cpu", round(sound["video_only_cpu"], 3), "cpu-s",
             "recorder's ffmpegs, audio = false, side by side")
        emit("audio_on_ffmpeg_cpu", round(sound["with_audio_cpu"], 3), "cpu-s",
             "recorder's ffmpegs, G.711 -> AAC 32 kbit/s")
        emit("audio_cost_cpu", round((sound["with_audio_cpu"] - sound["video_only_cpu"])
                                     * per_min, 3), "cpu-s/min/camera",
             "what recording the sound adds, per camera")
        emit("audio_cost_ratio", round(sound["with_audio_cpu"] / sound["video_only_cpu"], 2)
             if sound["video_only_cpu"] else "nan", "x", "audio on / video only")
        emit("audio_cost_bytes", round(sound["with_audio_disk"] / sound["video_only_disk"], 3)
             if sound["video_only_disk"] else "nan", "x", "disk, audio on / video only")
        emit("audio_restarts", sound["restarts"], "restarts", "should be 0")
        if args.json:
            print(json.dumps({"bare": base, "recorder": rec, "audio": sound}))
        if args.soak:
            soak(StreamInput(url=str(render_scene(work / "small.mp4", seconds=10,
                                                  size=(320, 240), fps=15))),
                 args.soak, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
