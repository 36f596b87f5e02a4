"""Uplink cost and speed, each against its bare baseline in the same run.

1. CPU of one live push (the node's path: LiveManager -> ManagedProcess -> ffmpeg -c copy,
   progress parsing, ttl ticks) against a bare ``ffmpeg -c copy`` push of the same
   720p15 H.264 stream to the same nginx-rtmp. CPU = the ffmpeg child plus this whole
   process (the bench only sleeps in the window), over a steady window. Goal <= 1.05x.
2. Command-to-first-frame: a signed `live` command over a real Mosquitto to a real node
   (Daemon: cameras, mqtt, uplink; an RTSP test camera) until the first video tag is in
   nginx's recording of the stream (the media server's own view). Goal <= 2 s.
3. Upload throughput of `uplink.upload.put_file` against ``curl -T`` of the same 64 MiB
   file to nginx's WebDAV PUT on loopback. Goal >= 0.9x.
4. Panic -> siren p99 (bench/alarm.py's path) without and with a live push and an upload
   running in the same process: it must not move.

    .venv/bin/python bench/uplink.py [--seconds 20] [--rounds 5]

Prints ``name<TAB>value<TAB>unit<TAB>note`` lines (bench/run.py collects them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.media_server import LocalNginx  # noqa: E402
from devtools.scene import render_scene  # noqa: E402
from drivers.process import spawn, terminate  # noqa: E402
from uplink.bandwidth import Bandwidth  # noqa: E402
from uplink.live import LiveManager, Source  # noqa: E402
from uplink.targets import check_upload_url  # noqa: E402
from uplink.upload import Stopped, put_file  # noqa: E402


def emit(name: str, value: float | int | str, unit: str, note: str = "") -> None:
    print(f"{name}\t{value}\t{unit}\t{note}", flush=True)


def cpu_s(pids: list[int]) -> float:
    """CPU seconds of every thread of `pids`, from schedstat (nanoseconds, not 10 ms ticks)."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                    total += int(fh.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total / 1e9


def window_cpu(pids: list[int] | Callable[[], list[int]], seconds: float) -> float:
    get = pids if callable(pids) else (lambda: pids)
    before = cpu_s(get())
    time.sleep(seconds)
    return cpu_s(get()) - before


# ---- 1. CPU of a push --------------------------------------------------------------------
def push_cpu(nginx: LocalNginx, clip: Path, seconds: float) -> tuple[float, float]:
    """CPU of bare ffmpeg and of the node's push, A/B/A/B so that load from elsewhere on
    the machine falls on both alike."""
    inputs = ["-readrate", "1", "-stream_loop", "-1", "-i", str(clip)]
    me = os.getpid()
    bare_cpu = node_cpu = 0.0
    for _ in range(2):
        bare = spawn(["ffmpeg", "-nostdin", "-loglevel", "error", *inputs, "-map", "0:v:0",
                      "-c", "copy", "-f", "flv", nginx.rtmp_url("bare")],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(3)
        bare_cpu += window_cpu([bare.pid, me], seconds)
        terminate(bare)
        node_cpu += node_push_cpu(nginx, inputs, seconds)
    return bare_cpu, node_cpu


def node_push_cpu(nginx: LocalNginx, inputs: list[str], seconds: float) -> float:
    live = LiveManager(Bandwidth(), on_state=lambda c, d: None, estimate_kbps=lambda s: 2000)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(1.0):  # as the wiring's component does
            live.tick()
    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    ok, message, _ = live.start("cam", "main", 600, Source(inputs, "h264"),
                                nginx.rtmp_url("node"), "node")
    assert ok, message
    time.sleep(3)
    push = live.pushes["cam"]
    cpu = window_cpu(lambda: [p for p in (push.process.pid, os.getpid()) if p], seconds)
    live.stop_all("bench over")
    stop.set()
    ticker.join()
    return cpu


# ---- 2. command to first frame ---------------------------------------------------------
def first_video_tag(path: Path) -> bool:
    """Whether the FLV file holds a video tag yet."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    pos = 13  # FLV header (9) + PreviousTagSize0 (4)
    while pos + 11 <= len(data):
        kind = data[pos] & 0x1F
        size = struct.unpack(">I", b"\0" + data[pos + 1:pos + 4])[0]
        if kind == 9 and pos + 11 + size <= len(data):
            return True
        pos += 11 + size + 4
    return False


def command_to_first_frame(nginx: LocalNginx, rounds: int) -> list[float]:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from devtools.broker import LocalBroker
    from devtools.rtsp_camera import RtspTestCamera
    from firmware import config
    from firmware.daemon import Daemon
    from mqtt.signing import generate_keypair, sign_command

    private, public = generate_keypair()
    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, LocalBroker() as broker, \
            RtspTestCamera(size=(1280, 720)) as cam:
        cfg = config.parse({
            "node": {"id": "rw05", "data_dir": f"{tmp}/state"},
            "mqtt": {"brokers": [broker.url], "command_keys": [public]},
            "cameras": [{"name": "gate", "url": cam.plain_url}],
            "recorder": {"enabled": False}, "detect": {"enabled": False},
            "gpio": {"pin_factory": "mock"},
            "uplink": {"media_url": f"rtmp://127.0.0.1:{nginx.rtmp_port}/live/{{node}}-{{camera}}"},
        })
        daemon = Daemon(cfg)
        threading.Thread(target=daemon.run, daemon=True).start()
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        registry = daemon.context.shared["cameras"]
        deadline = time.monotonic() + 30
        while registry.state("gate")[0] != "online" and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        rec = nginx.recording("rw05-gate")
        for _ in range(rounds):
            rec.unlink(missing_ok=True)
            cmd = sign_command(private, node="rw05", action="live", cmd_id=uuid.uuid4().hex,
                               args={"camera": "gate", "ttl_s": 30})
            sent = time.monotonic()
            client.publish("ronda/v1/rw05/cmd/live", json.dumps(cmd), qos=1)
            while not first_video_tag(rec):
                if time.monotonic() - sent > 20:
                    raise RuntimeError("no frame at the media server within 20 s")
                time.sleep(0.01)
            times.append(time.monotonic() - sent)
            stop = sign_command(private, node="rw05", action="live-stop",
                                cmd_id=uuid.uuid4().hex, args={"camera": "gate"})
            client.publish("ronda/v1/rw05/cmd/live-stop", json.dumps(stop), qos=1)
            time.sleep(1.5)
        client.loop_stop()
        daemon.request_stop()
        time.sleep(2)
    return times


# ---- 3. upload throughput -----------------------------------------------------------------
def upload_speed(nginx: LocalNginx, size: int) -> dict[str, list[tuple[float, float]]]:
    """(wall s, CPU s) per upload. The order alternates each round and the previous files
    are synced and deleted first: whoever goes second would otherwise pay for the
    write-back of the other's 64 MiB."""
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "clip.bin"
        with data.open("wb") as f:
            for _ in range(size // 2**20):
                f.write(os.urandom(2**20))
        out: dict[str, list[tuple[float, float]]] = {"curl": [], "node": []}
        me = psutil.Process()

        def curl(i: int) -> None:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.monotonic()
            subprocess.run(["curl", "-sS", "-f", "-o", "/dev/null", "-T", str(data),
                            nginx.put_url(f"curl-{i}.bin")], check=True)
            wall = time.monotonic() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            out["curl"].append((wall, after.ru_utime + after.ru_stime
                                - before.ru_utime - before.ru_stime))

        def node(i: int) -> None:
            target = check_upload_url(nginx.put_url(f"node-{i}.bin"), allow_lan=True)
            before = me.cpu_times()
            start = time.monotonic()
            put_file(target, data)
            wall = time.monotonic() - start
            after = me.cpu_times()
            out["node"].append((wall, after.user + after.system - before.user - before.system))

        for i in range(8):
            for run in ((curl, node) if i % 2 == 0 else (node, curl)):
                for old in (nginx.dir / "upload").glob("*.bin"):
                    old.unlink()
                os.sync()
                run(i)
    return out


# ---- 4. panic -> siren while video flows ------------------------------------------------
def siren_while_video(nginx: LocalNginx, clip: Path, presses: int) -> tuple[list[float],
                                                                              list[float]]:
    """bench/alarm.py's press -> siren pin path, without and then with a live push and an
    upload running in the same process (they share its GIL, as in the daemon)."""
    import importlib.util
    import logging

    spec = importlib.util.spec_from_file_location("bench_alarm", ROOT / "bench" / "alarm.py")
    assert spec is not None and spec.loader is not None
    alarm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(alarm)
    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        node = alarm.AlarmNode(Path(tmp) / "state")
        try:
            quiet = [node.press_once()[0] for _ in range(presses)]
            live = LiveManager(Bandwidth(), on_state=lambda c, d: None,
                               estimate_kbps=lambda s: 2000)
            inputs = ["-readrate", "1", "-stream_loop", "-1", "-i", str(clip)]
            assert live.start("cam", "main", 600, Source(inputs, "h264"),
                              nginx.rtmp_url("alarm"), "alarm")[0]
            data = Path(tmp) / "upload.bin"
            data.write_bytes(os.urandom(32 * 2**20))
            stop = threading.Event()

            def uploads() -> None:
                target = check_upload_url(nginx.put_url("alarm.bin"), allow_lan=True)
                while not stop.is_set():
                    with contextlib.suppress(Stopped):
                        put_file(target, data, stop=stop)
            uploader = threading.Thread(target=uploads, daemon=True)
            uploader.start()
            time.sleep(3)
            busy = [node.press_once()[0] for _ in range(presses)]
            stop.set()
            live.stop_all("bench over")
            uploader.join(10)
        finally:
            node.stop()
    return quiet, busy


def p99_ms(samples: list[float]) -> float:
    return statistics.quantiles([s * 1000 for s in samples], n=100, method="inclusive")[98]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="CPU window (s), x2")
    parser.add_argument("--rounds", type=int, default=5, help="command-to-frame rounds")
    parser.add_argument("--upload-mib", type=int, default=64)
    parser.add_argument("--presses", type=int, default=300, help="panic presses per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = render_scene(Path(tmp) / "scene.mkv", seconds=10, size=(1280, 720), fps=15)
        with LocalNginx() as nginx:
            bare, node = push_cpu(nginx, clip, args.seconds)
            emit("push_cpu_bare", round(bare, 3), "cpu s",
                 f"bare ffmpeg -c copy, 2 x {args.seconds:.0f} s")
            emit("push_cpu_node", round(node, 3), "cpu s", "LiveManager push, same stream")
            emit("push_cpu_ratio", round(node / bare, 3) if bare else "n/a", "x", "goal <= 1.05")
            # the upload before the phases that leave a daemon's threads in this process
            speeds = upload_speed(nginx, args.upload_mib * 2**20)
            mib = args.upload_mib
            curl = statistics.median(mib / w for w, _ in speeds["curl"])
            ours = statistics.median(mib / w for w, _ in speeds["node"])
            emit("upload_curl", round(curl, 1), "MiB/s",
                 "curl -T to nginx WebDAV, median of 8, order alternating")
            emit("upload_node", round(ours, 1), "MiB/s", "put_file, median of 8, order alternating")
            emit("upload_ratio", round(ours / curl, 3), "x", "goal >= 0.9")
            emit("upload_curl_cpu", round(statistics.median(c for _, c in speeds["curl"]), 3),
                 "cpu s", f"curl -T of {mib} MiB, median")
            emit("upload_node_cpu", round(statistics.median(c for _, c in speeds["node"]), 3),
                 "cpu s", f"put_file of {mib} MiB, median")
            times = command_to_first_frame(nginx, args.rounds)
            emit("cmd_to_first_frame_median", round(statistics.median(times), 2), "s",
                 "signed live over Mosquitto -> first video tag at nginx; goal <= 2")
            emit("cmd_to_first_frame_max", round(max(times), 2), "s", f"{len(times)} rounds")
            quiet, busy = siren_while_video(nginx, clip, args.presses)
            emit("siren_p99_quiet", round(p99_ms(quiet), 3), "ms",
                 f"press -> siren pin, {args.presses} presses (bench/alarm.py's path)")
            emit("siren_p99_video", round(p99_ms(busy), 3), "ms",
                 "the same with a live push and an upload running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
