#!/usr/bin/env python3
"""Web page bench: live delay, time to first frame, CPU per live viewer, playback start,
and the panic -> siren latency while five people watch live.

A whole node runs in this process (cameras, recorder, alarm on mock pins, the web page)
with an RTSP test camera at 1280x720@15. Phases, each against the same node:

1. no viewers: CPU of the node (this process + its ffmpegs) over a window, and 300
   panic presses timed from the mock pin's edge to the siren pin (as bench/alarm.py);
2. five live viewers (WebSocket readers in a separate process, so that their own cost
   is not counted): the same CPU window and presses; time from connect to first fragment;
3. Debian's headless Chromium: time to first live frame, live delay (wall clock minus
   the frame's time: the stream's zero is when the relay started ffmpeg, so this is an
   upper bound by the RTSP handshake), the player's lag behind what it has buffered (the
   tests only check that the video plays), and playback start from a tap on the
   timeline.

Prints `name<TAB>value<TAB>unit<TAB>note` lines (bench/run.py collects them).
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.broker import free_port  # noqa: E402
from devtools.rtsp_camera import RtspTestCamera  # noqa: E402
from firmware import config  # noqa: E402
from firmware.daemon import Daemon  # noqa: E402
from web.users import FILENAME, UserStore  # noqa: E402

PANIC, ACK, SIREN, LIGHT = 17, 27, 23, 24
PRESSES = 300
WINDOW_S = 15.0
VIEWERS = 5
PASSWORD = "bench-password-1"

VIEWER_SCRIPT = r"""
import json, ssl, sys, threading, time, websocket
url, cookie, origin = sys.argv[1:4]
n, seconds = int(sys.argv[4]), float(sys.argv[5])
firsts, counts = [], [0] * n
def watch(i):
    t0 = time.monotonic()
    ws = websocket.create_connection(url, sslopt={"cert_reqs": ssl.CERT_NONE},
                                     cookie=cookie, origin=origin)
    first = None
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data = ws.recv()
        if isinstance(data, bytes) and data[4:8] == b"moof":
            counts[i] += len(data)
            if first is None:
                first = time.monotonic() - t0
                firsts.append(first)
    ws.close()
threads = [threading.Thread(target=watch, args=(i,)) for i in range(n)]
for t in threads: t.start(); time.sleep(0.2)
for t in threads: t.join()
print(json.dumps({"firsts": firsts, "bytes": counts}))
"""


def emit(name: str, value: float, unit: str, note: str = "") -> None:
    print(f"{name}\t{value:.4g}\t{unit}\t{note}", flush=True)


def node_cpu_s(me: psutil.Process) -> float:
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            if child.name() != "python3":  # the RTSP test camera is not the node
                total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def camera_procs(me: psutil.Process) -> set[int]:
    return {p.pid for p in me.children(recursive=True) if "rtsp_camera" in " ".join(p.cmdline())}


def cpu_window(me: psutil.Process, skip: set[int]) -> float:
    """CPU seconds of this process and its children (but `skip`) over WINDOW_S."""
    def total() -> dict[int, float]:
        out = {me.pid: sum(me.cpu_times()[:2])}
        for child in me.children(recursive=True):
            if child.pid in skip:
                continue
            try:
                out[child.pid] = sum(child.cpu_times()[:2])
            except psutil.Error:
                continue
        return out

    before = total()
    time.sleep(WINDOW_S)
    after = total()
    return sum(after[p] - before[p] for p in after if p in before)


def web_cpu_s(me: psutil.Process) -> float:
    """CPU seconds so far of what serves live video: the server's thread (`web`), the
    relays' readers (`live:*`), worker threads, and the relays' ffmpegs (per-thread
    schedstat: exact, and blind to the rest of the node and to other jobs)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    total = 0.0
    for tid, name in names.items():
        if name == "web" or name.startswith(("live:", "AnyIO", "ThreadPool", "asyncio")):
            try:
                total += int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
            except OSError:
                continue
    total /= 1e9
    for child in me.children(recursive=True):
        try:
            if child.name() == "ffmpeg" and "frag_duration" in " ".join(child.cmdline()):
                total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return total


def web_window(me: psutil.Process) -> float:
    before = web_cpu_s(me)
    time.sleep(WINDOW_S)
    return web_cpu_s(me) - before


class Presses:
    """Panic edge -> siren pin on the node's mock pins (see bench/alarm.py)."""

    def __init__(self, daemon: Daemon) -> None:
        controller = daemon.context.shared["alarm"]
        self.factory = controller.panel.factory
        self.stamps: list[float] = []
        pin = self.factory.pin(SIREN)
        change = pin._change_state

        def recording(value: bool) -> bool:
            result = change(value)
            if value:
                self.stamps.append(time.perf_counter())
            return result

        pin._change_state = recording

    def run(self, n: int) -> list[float]:
        samples = []
        panic, ack = self.factory.pin(PANIC), self.factory.pin(ACK)
        for _ in range(n):
            before = len(self.stamps)
            t0 = time.perf_counter()
            panic.drive_low()
            if len(self.stamps) > before:
                samples.append(self.stamps[-1] - t0)
            time.sleep(0.002)
            panic.drive_high()
            ack.drive_low()
            time.sleep(0.002)
            ack.drive_high()
            time.sleep(0.01)
        return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def login_cookie(base: str) -> str:
    import http.cookiejar
    import ssl
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx),
                                         urllib.request.HTTPCookieProcessor(jar))
    req = urllib.request.Request(base + "/login", data=f"name=bench&password={PASSWORD}"
                                 .encode(), headers={"Origin": base})
    opener.open(req, timeout=30)
    cookie = next(c for c in jar if c.name == "ronda_session")
    return f"{cookie.name}={cookie.value}"


def browser_phase(base: str, workdir: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={workdir / 'chromium'}", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    js = driver.execute_script
    try:
        driver.get(base + "/login")
        driver.find_element("name", "name").send_keys("bench")
        driver.find_element("name", "password").send_keys(PASSWORD + "\n")
        time.sleep(2)
        firsts, delays, lags = [], [], []
        for _ in range(3):
            js("location.hash = '#overview'")
            time.sleep(12)  # the relay lingers 10 s: each round starts it cold
            t0 = time.monotonic()
            js("location.hash = '#live/gang'")
            while not (js("return document.getElementById('live-video').currentTime") or 0) > 0:
                if time.monotonic() - t0 > 30:
                    raise RuntimeError("live video did not start")
                time.sleep(0.02)
            firsts.append(time.monotonic() - t0)
            time.sleep(3)
            for _ in range(20):
                delays.append(js("const v = document.getElementById('live-video');"
                                 "return Date.now() / 1000 - live.t0 - v.currentTime"))
                lags.append(js("const v = document.getElementById('live-video');"
                               "return v.buffered.end(v.buffered.length - 1) - v.currentTime"))
                time.sleep(0.25)
        emit("live_first_frame_s", statistics.median(firsts), "s",
             f"tap -> video playing, relay cold, median of {len(firsts)}")
        emit("live_delay_p50_s", statistics.median(delays), "s",
             "wall clock - frame time (upper bound: includes the RTSP handshake)")
        emit("live_delay_max_s", max(delays), "s", f"{len(delays)} samples")
        emit("live_buffer_lag_max_s", max(lags), "s",
             "buffered end - playing position: how far behind what it has the player is")
        js("location.hash = '#rec/gang'")
        time.sleep(2)
        starts = []
        for back in (40, 25, 10):
            at = time.time() - back
            js("rec.hour = null; showHour(Math.floor(arguments[0] / 3600) * 3600)", at)
            js("rec.startMs = 0; play(arguments[0])", at)
            t0 = time.monotonic()
            while not js("return rec.startMs"):
                if time.monotonic() - t0 > 30:
                    raise RuntimeError("playback did not start")
                time.sleep(0.02)
            starts.append(js("return rec.startMs") / 1000)
        emit("playback_start_s", statistics.median(starts), "s",
             "tap on the timeline -> 'playing' (median of 3, measured in the page)")
    finally:
        driver.quit()


def main() -> int:
    logging.disable(logging.ERROR)  # 600 alarms log a lot; the figures are what matter here
    with tempfile.TemporaryDirectory(prefix="ronda-bench-web-") as tmp:
        workdir = Path(tmp)
        camera = RtspTestCamera(path="gang", size=(1280, 720), fps=15, seconds=20).start()
        port = free_port()
        cfg = config.parse({
            "node": {"id": "bench-web", "data_dir": str(workdir / "state")},
            "mqtt": {"enabled": False},
            "cameras": [{"name": "gang", "kind": "rtsp", "url": camera.url, "fps": 15}],
            "recorder": {"path": str(workdir / "rec"), "segment_s": 4},
            "gpio": {"pin_factory": "mock", "panic": [{"pin": PANIC, "bounce_ms": 1}],
                     "ack": {"pin": ACK, "bounce_ms": 1}, "siren": {"pin": SIREN},
                     "light": {"pin": LIGHT}},
            "web": {"enabled": True, "host": "127.0.0.1", "port": port, "max_viewers": 8},
        })
        UserStore(workdir / "state" / FILENAME).add("bench", "operator", PASSWORD)
        daemon = Daemon(cfg)
        daemon.bus.start()
        daemon.supervisor.start()
        me = psutil.Process(os.getpid())
        base = f"https://127.0.0.1:{port}"
        try:
            time.sleep(15)  # camera probed, recording, page listening
            skip = camera_procs(me)
            presses = Presses(daemon)
            idle_cpu = cpu_window(me, skip)
            emit("node_cpu_no_viewers", idle_cpu / WINDOW_S * 100, "% core",
                 f"node + its ffmpegs over {WINDOW_S:g} s (baseline)")
            idle = presses.run(PRESSES)
            emit("panic_to_siren_p50_no_viewers_ms", pct(idle, 0.5) * 1e3, "ms")
            emit("panic_to_siren_p99_no_viewers_ms", pct(idle, 0.99) * 1e3, "ms")
            cookie = login_cookie(base)
            url = base.replace("https", "wss") + "/api/cameras/gang/live"

            def watchers(n: int, seconds: float) -> subprocess.Popen:
                return subprocess.Popen([sys.executable, "-c", VIEWER_SCRIPT, url, cookie, base,
                                         str(n), str(seconds)], stdout=subprocess.PIPE, text=True)

            one = watchers(1, WINDOW_S + 8)
            time.sleep(5)
            one_web = web_window(me)
            one.communicate(timeout=60)
            emit("live_cpu_1_viewer", one_web / WINDOW_S * 100, "% core",
                 "relay ffmpeg + server threads, one viewer")
            time.sleep(12)  # the relay lingers 10 s: the next phase starts it again
            viewers = watchers(VIEWERS, WINDOW_S * 2 + 25)
            time.sleep(5)
            busy_web = web_window(me)
            emit("live_cpu_5_viewers", busy_web / WINDOW_S * 100, "% core",
                 f"relay ffmpeg + server threads, {VIEWERS} viewers of one camera")
            emit("live_cpu_per_viewer", busy_web / VIEWERS / WINDOW_S * 100, "% core",
                 "goal < 2 (nothing is re-encoded)")
            emit("live_cpu_each_further_viewer", (busy_web - one_web) / (VIEWERS - 1)
                 / WINDOW_S * 100, "% core", "what one more phone costs")
            busy_cpu = cpu_window(me, skip | {viewers.pid})
            emit("node_cpu_5_viewers", busy_cpu / WINDOW_S * 100, "% core",
                 "whole node + its ffmpegs (noisy on a shared machine)")
            busy = presses.run(PRESSES)
            emit("panic_to_siren_p50_5_viewers_ms", pct(busy, 0.5) * 1e3, "ms")
            emit("panic_to_siren_p99_5_viewers_ms", pct(busy, 0.99) * 1e3, "ms",
                 "same presses while 5 people watch live")
            out, _ = viewers.communicate(timeout=120)
            result: dict[str, Any] = json.loads(out)
            emit("ws_mbit_per_viewer", statistics.mean(result["bytes"]) * 8 / 1e6
                 / (WINDOW_S * 2 + 25), "Mbit/s", "what each viewer received (check)")
            emit("ws_first_fragment_s", statistics.median(result["firsts"]), "s",
                 "connect -> first video fragment (first viewer starts the relay)")
            emit("rss_mib", me.memory_info().rss / 2**20, "MiB", "the node process (Python)")
            browser_phase(base, workdir)
        finally:
            daemon.supervisor.stop()
            daemon.bus.stop()
            camera.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
