"""Command Center bench: ingest rate, panic-to-browser latency, map load with 1,000 posts.

Figures (name<TAB>value<TAB>unit<TAB>note):

- ``baseline_paho_*``: N QoS 1 events published as fast as one client can, received by a
  bare paho subscriber that stores nothing: the floor of the pipeline on this machine;
- ``ingest_<db>_<k>w_*``: the same N events into `k` ingest worker processes
  (`ronda-central ingest`, a `$share` group when k = 2) storing into SQLite or PostgreSQL:
  events/s from the first publish to the last row committed, lost and duplicated rows,
  CPU seconds of the workers;
- ``fleet_<n>_*``: `--nodes` simulated posts (`CityFleet`: fleet-sim's contract, rate and
  last wills) opening with a burst, into one and two ingest workers on PostgreSQL: rows
  lost, seq holes, posts shown offline at the end;
- ``panic_to_browser_*``: with `--nodes` simulated posts connected (CityFleet, realistic
  rates), a panic event published -> the alarm card shown in headless Chromium (the page's
  own clock, same machine), p50/p99 over `--presses` presses;
- ``map_load_*``: the console's home page with `--nodes` posts: navigation start -> the map
  drawn, and the `/api/nodes` call alone;
- ``upload_*``: a footage upload (`--upload-mb` MB, `curl -T` on loopback, as a node's PUT)
  into the console's `/footage/upload/<id>.mp4?token=...` against the same file into Debian's nginx
  WebDAV (the baseline): MB/s, and the console process's CPU seconds and RSS, median of 3.

Example::

    .venv/bin/python bench/central.py                 # about 3 min
    .venv/bin/python bench/central.py --events 2000 --nodes 300 --presses 10
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402
import tomli_w  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from central.auth import add_user  # noqa: E402
from central.db import Database  # noqa: E402
from central.devtools.browser import chromium, login, wait_js  # noqa: E402
from central.devtools.fleet import CityFleet  # noqa: E402
from central.devtools.postgres import LocalPostgres  # noqa: E402
from central.mqtt_client import ClientOptions  # noqa: E402
from devtools.broker import LocalBroker, free_port  # noqa: E402
from mqtt.link import encode  # noqa: E402
from mqtt.payloads import event_payload  # noqa: E402
from mqtt.topics import Topics  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
BROKER_CONFIG = "max_queued_messages 0\nset_tcp_nodelay true\nmax_inflight_messages 100\n"


def say(name: str, value: float | int | str, unit: str, note: str = "") -> None:
    print(f"{name}\t{value if isinstance(value, str) else round(value, 3)}\t{unit}\t{note}",
          flush=True)


def event_docs(count: int, nodes: int = 100) -> list[tuple[str, bytes]]:
    """`count` valid object events spread over `nodes` posts, each with its own seq."""
    out, seqs, run = [], [0] * nodes, uuid.uuid4().hex[:6]
    for i in range(count):
        n = i % nodes
        seqs[n] += 1
        node = f"bench-{run}-{n:04d}"
        topics = Topics("ronda/v1", node)
        fields = {"id": uuid.uuid4().hex, "ts": time.time(), "type": "object", "camera": "gang",
                  "track_id": str(i), "phase": "start", "label": "person", "score": 0.9}
        doc = {**event_payload(fields, node, topics, False), "seq": seqs[n]}
        out.append((topics.events, encode(doc)))
    return out


def publish_all(port: int, docs: list[tuple[str, bytes]]) -> float:
    """Publish every doc at QoS 1 from one client; the monotonic time of the first publish."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    t0 = time.monotonic()
    infos = [client.publish(topic, payload, qos=1) for topic, payload in docs]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return t0


def bench_baseline(events: int) -> None:
    docs = event_docs(events)
    with LocalBroker(extra_config=BROKER_CONFIG) as broker:
        got = threading.Event()
        count = [0]
        sub = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)

        def on_message(*_: object) -> None:
            count[0] += 1
            if count[0] >= events:
                got.set()

        sub.on_message = on_message
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("ronda/v1/+/events", qos=1)
        sub.loop_start()
        time.sleep(0.3)
        t0 = publish_all(broker.port, docs)
        got.wait(120)
        elapsed = time.monotonic() - t0
        sub.loop_stop()
        say("baseline_paho_rate", events / elapsed, "events/s",
            f"{events} QoS 1 events, subscriber stores nothing")


def bench_ingest(db_url: str, label: str, workers: int, events: int, tmp: Path) -> None:
    docs = event_docs(events)
    db = Database(db_url).migrate()
    with LocalBroker(extra_config=BROKER_CONFIG, persistence=True) as broker:
        config = tmp / f"central-{label}-{workers}.toml"
        config.write_text(tomli_w.dumps({"database": {"url": db_url}, "mqtt": {
            "broker": broker.url, "group": "bench" if workers > 1 else ""}}))
        procs = []
        for k in range(workers):
            proc = subprocess.Popen([sys.executable, "-m", "central", "--config", str(config),
                                     "ingest", "--client-id", f"bench-{label}-{k}"], cwd=ROOT,
                                    env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            proc.stdout.readline()  # "ingest ... running"
            procs.append(proc)
        time.sleep(0.5)
        cpu0 = sum(_cpu(p.pid) for p in procs)
        t0 = publish_all(broker.port, docs)
        deadline = time.monotonic() + 300
        stored = 0
        while time.monotonic() < deadline:
            stored = int(db.scalar("SELECT count(*) FROM events"))
            if stored >= events:
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu = sum(_cpu(p.pid) for p in procs) - cpu0
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    dup = int(db.scalar("SELECT coalesce(sum(duplicates), 0) FROM nodes"))
    db.close()
    name = f"ingest_{label}_{workers}w"
    say(f"{name}_rate", stored / elapsed, "events/s",
        f"{events} events from 100 posts, first publish -> last row committed")
    say(f"{name}_lost", events - stored, "events")
    say(f"{name}_duplicates_dropped", dup, "events", "redeliveries dropped by id")
    say(f"{name}_worker_cpu", cpu, "CPU s", f"{cpu / max(1, stored) * 1000:.2f} ms per event")


def _cpu(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def bench_fleet(db_url: str, label: str, workers: int, nodes: int, seconds: float,
                tmp: Path) -> None:
    """`nodes` simulated posts at fleet-sim's default rate, opening with a burst (every post
    raises an event in the same second), into `workers` ingest processes."""
    db = Database(db_url).migrate()
    with LocalBroker(extra_config=BROKER_CONFIG, persistence=True) as broker:
        config = tmp / f"central-fleet-{label}-{workers}.toml"
        config.write_text(tomli_w.dumps({"database": {"url": db_url}, "mqtt": {
            "broker": broker.url, "group": "bench" if workers > 1 else ""}}))
        procs = []
        for k in range(workers):
            proc = subprocess.Popen([sys.executable, "-m", "central", "--config", str(config),
                                     "ingest", "--client-id", f"fleet-{label}-{k}"], cwd=ROOT,
                                    env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            proc.stdout.readline()
            procs.append(proc)
        result = CityFleet(ClientOptions(broker=broker.url), nodes=nodes, duration_s=seconds,
                           burst=True, crash_fraction=0.1).run()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and int(
                db.scalar("SELECT count(*) FROM events")) < result.sent:
            time.sleep(0.1)
        for proc in procs:
            proc.terminate()
            proc.wait(30)
    stored = int(db.scalar("SELECT count(*) FROM events"))
    holes = int(db.scalar("SELECT coalesce(sum(max_seq - min_seq + 1 - events), 0) FROM nodes"))
    offline = int(db.scalar("SELECT count(*) FROM nodes WHERE status = 'offline'"))
    db.close()
    name = f"fleet_{nodes}_{label}_{workers}w"
    say(f"{name}_sent", result.sent, "events",
        f"burst of {nodes} then {seconds:.0f} s at 0.2/s per post; {result.duplicates} "
        "redeliveries seen by the sim's own checker")
    say(f"{name}_lost_rows", result.sent - stored, "events")
    say(f"{name}_seq_holes", holes, "events")
    say(f"{name}_offline_at_end", offline, "posts", f"of {nodes} (wills and orderly stops)")


LOG_DIR: list[Path] = []


def bench_console(pg: LocalPostgres, nodes: int, presses: int, tmp: Path) -> None:
    LOG_DIR.append(tmp)
    url = pg.url(f"console_{uuid.uuid4().hex[:6]}")
    db = Database(url).migrate()
    add_user(db, "bench", "bench-password", "operator")
    with LocalBroker(extra_config=BROKER_CONFIG, persistence=True) as broker:
        port = free_port()
        config = tmp / "central-console.toml"
        config.write_text(tomli_w.dumps({"database": {"url": url},
                                         "mqtt": {"broker": broker.url}}))
        console = subprocess.Popen([sys.executable, "-m", "central", "--config", str(config),
                                    "serve", "--port", str(port)], cwd=ROOT, env=ENV,
                                   stdout=subprocess.PIPE,
                                   stderr=(tmp / "console.log").open("ab"))
        console.stdout.readline()
        fleet = CityFleet(ClientOptions(broker=broker.url), nodes=nodes, rate_per_node=0.02,
                          duration_s=60 + presses * 1.5, crash_fraction=0.0,
                          health_interval_s=30)
        sim = threading.Thread(target=fleet.run, daemon=True)
        sim.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and int(
                db.scalar("SELECT count(*) FROM nodes WHERE lat IS NOT NULL")) < nodes:
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        try:
            with chromium() as driver:
                login(driver, base, "bench", "bench-password")
                wait_js(driver, "window.ronda && window.ronda.ready", 30, "the console")
                static = []
                for _ in range(5):
                    driver.get(base + "/login")
                    static.append(driver.execute_script(
                        "return performance.getEntriesByType('navigation')[0].loadEventEnd"))
                say("map_load_baseline_login_page", sorted(static)[2], "ms",
                    "the static login page in the same browser: its floor")
                loads, api, marks = [], [], []
                for _ in range(5):
                    driver.get(base + "/")
                    wait_js(driver, "window.ronda && window.ronda.mapDrawn", 30, "the map")
                    loads.append(driver.execute_script(
                        "return ronda.mapDrawn - performance.timeOrigin"))
                    marks.append(driver.execute_script(
                        "const r = {}; for (const e of performance.getEntriesByType('resource'))"
                        " r[e.name.split('/').slice(3).join('/')] = [Math.round(e.startTime),"
                        " Math.round(e.responseEnd)];"
                        " r.dom = Math.round(performance.getEntriesByType('navigation')[0]"
                        ".domContentLoadedEventEnd); return r;"))
                    api.append(driver.execute_async_script(
                        "const done = arguments[0], t = performance.now();"
                        " fetch('/api/nodes').then(r => r.json())"
                        ".then(() => done(performance.now() - t));"))
                shown = driver.execute_script("return document.querySelectorAll("
                                              "'circle.post').length")
                loads.sort()
                say("map_load_median", loads[len(loads) // 2], "ms",
                    f"{shown} posts drawn; navigation start -> map drawn, 5 loads")
                say("map_load_max", loads[-1], "ms")
                print(f"map load timeline (ms from navigation): {marks[-1]}", file=sys.stderr)
                say("map_api_nodes_median", sorted(api)[len(api) // 2], "ms",
                    "GET /api/nodes alone (baseline of the page)")
                latencies = _presses(driver, broker.port, presses)
                latencies.sort()
                say("panic_to_browser_p50", latencies[len(latencies) // 2], "ms",
                    f"{nodes} posts connected, {len(latencies)} presses")
                say("panic_to_browser_p99",
                    latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))],
                    "ms", "goal <= 1000 ms")
        finally:
            console.terminate()
            console.wait(30)
            sim.join(5)
    db.close()


def _presses(driver: object, port: int, presses: int) -> list[float]:
    node = "bench-panic-rw"
    topics = Topics("ronda/v1", node)
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    out = []
    try:
        for seq in range(1, presses + 1):
            alarm_id = uuid.uuid4().hex[:12]
            now = time.time()
            fields = {"id": alarm_id, "ts": now, "type": "panic", "camera": None,
                      "alarm_id": alarm_id, "kind": "panic", "phase": "raised",
                      "source": "button:panic", "presses": 1}
            doc = {**event_payload(fields, node, topics, False), "seq": seq}
            client.publish(topics.events, encode(doc), qos=1)
            try:
                seen = wait_js(driver, f"ronda.firstSeen['{alarm_id}']", 20, "the alarm card")
            except AssertionError:
                print((LOG_DIR[0] / "console.log").read_text()[-3000:], file=sys.stderr)
                raise
            out.append(seen - now * 1000)
            time.sleep(0.3 + (seq % 3) * 0.2)
    finally:
        client.disconnect()
        client.loop_stop()
    return out


def bench_upload(size_mb: int, tmp: Path) -> None:
    import hashlib
    import secrets
    import statistics

    from devtools.media_server import LocalNginx

    body = tmp / "upload.mp4"
    with body.open("wb") as f:  # an MP4's first box, then noise (the console checks the box)
        f.write(b"\0\0\0\x18ftypisom" + b"\0" * 12)
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    db_url = f"sqlite:///{tmp}/upload.sqlite3"
    config = tmp / "upload.toml"
    config.write_text(tomli_w.dumps({"database": {"url": db_url},
                                     "footage": {"dir": str(tmp / "footage"),
                                                 "max_mb": size_mb + 10}}))
    db = Database(db_url).migrate()
    tokens = [secrets.token_urlsafe(16) for _ in range(3)]
    with db.tx() as cur:
        for i, token in enumerate(tokens):
            cur.execute("INSERT INTO footage (id, token, node, camera, start_ts, end_ts, author,"
                        " requested, expires, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (f"b{i}", hashlib.sha256(token.encode()).hexdigest(), "rw", "gate", 1.0,
                         2.0, "bench", time.time(), time.time() + 3600, "accepted"))
    db.close()
    port = free_port()
    console = subprocess.Popen([sys.executable, "-m", "central", "--config", str(config),
                                "serve", "--port", str(port)], cwd=ROOT, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def curl(url: str) -> float:
        t0 = time.monotonic()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", "-T", str(body), url], check=True)
        return time.monotonic() - t0

    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/login"],
                             check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError("the console did not start")
            time.sleep(0.2)
        with LocalNginx() as nginx:
            base = [curl(nginx.put_url(f"bench-{i}.mp4")) for i in range(3)]
        cpu0 = _cpu(console.pid)
        took = [curl(f"http://127.0.0.1:{port}/footage/upload/b{i}.mp4?token={t}")
                for i, t in enumerate(tokens)]
        cpu = (_cpu(console.pid) - cpu0) / len(tokens)
        rss = psutil.Process(console.pid).memory_info().rss / 2**20
    finally:
        console.terminate()
        console.wait(15)
    say("upload_baseline_nginx_webdav", size_mb / statistics.median(base), "MB/s",
        f"{size_mb} MB, curl -T on loopback")
    say("upload_console", size_mb / statistics.median(took), "MB/s", "the same into the console")
    say("upload_console_cpu", cpu, "CPU s", f"console process per {size_mb} MB upload")
    say("upload_console_rss", rss, "MiB", "console process after the uploads")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=30)
    parser.add_argument("--skip-console", action="store_true")
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--fleet-s", type=float, default=15)
    parser.add_argument("--upload-mb", type=int, default=100)
    parser.add_argument("--skip-upload", action="store_true")
    args = parser.parse_args()
    cpu0 = time.process_time()
    with tempfile.TemporaryDirectory(prefix="ronda-bench-central-") as tmp_name, \
            LocalPostgres() as pg:
        tmp = Path(tmp_name)
        for workers in () if args.skip_ingest else (1, 2):
            if workers == 1:
                bench_baseline(args.events)
            bench_ingest(f"sqlite:///{tmp}/bench-{workers}.sqlite3", "sqlite", workers,
                         args.events, tmp)
            bench_ingest(pg.url(f"bench_{workers}"), "postgresql", workers, args.events, tmp)
        if not args.skip_fleet:
            for workers in (1, 2):
                bench_fleet(pg.url(f"fleet_{workers}"), "postgresql", workers, args.nodes,
                            args.fleet_s, tmp)
        if not args.skip_console:
            bench_console(pg, args.nodes, args.presses, tmp)
        if not args.skip_upload:
            bench_upload(args.upload_mb, tmp)
    say("machine_load_1min", os.getloadavg()[0], "runnable", f"{os.cpu_count()} CPUs; figures "
        "are noisy when this is far above the CPU count")
    say("bench_process_cpu", time.process_time() - cpu0, "CPU s", "this script (publishers, sim)")
    say("bench_process_rss", psutil.Process().memory_info().rss / 2**20, "MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
