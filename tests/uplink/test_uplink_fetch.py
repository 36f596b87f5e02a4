"""`fetch`: export a range, PUT it to a real server (Debian's nginx with WebDAV; a small
http.server for the misbehaving ones), retries, the queue, restarts, bad input."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from uplink_kit import probe

from tests.waiting import wait_for
from uplink.bandwidth import Bandwidth
from uplink.fetch import Fetcher
from uplink.targets import check_upload_url

NOW = time.time()
RANGE = {"camera": "gate", "start": NOW - 120, "end": NOW - 60}


@pytest.fixture(scope="session")
def clip(h264_source, tmp_path_factory) -> Path:
    """What the export path gives for the range: a real MP4 (stream copy of the scene)."""
    out = tmp_path_factory.mktemp("clip") / "clip.mp4"
    src = h264_source.input_args[-1]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-stream_loop", "3",
                    "-i", src, "-c", "copy", "-movflags", "+faststart", str(out)], check=True)
    return out


class Harness:
    """A Fetcher with recording callbacks and its worker thread."""

    def __init__(self, tmp_path: Path, clip: Path, **kw: Any) -> None:
        self.protected: list[tuple] = []
        self.released: list[str] = []
        self.events: list[tuple[str, str, dict]] = []
        self.cond = threading.Condition()
        self.clip = clip
        self.footage_s = 60.0
        options = {"retry_min_s": 0.1, "retry_max_s": 0.2, "stall_s": 2.0, "attempts": 3,
                   "allow_lan": True, **kw}
        allow_lan = options.pop("allow_lan")
        self.fetcher = Fetcher(
            tmp_path / "uplink-queue.json", tmp_path / "spool", bandwidth=Bandwidth(),
            cameras=lambda: ["gate", "lane"], footage=lambda c, s, e: self.footage_s,
            export=lambda c, s, e, out: shutil.copyfile(self.clip, out),
            protect=lambda *a: self.protected.append(a), release=self.released.append,
            check_url=lambda u: check_upload_url(u, allow_lan=allow_lan),
            on_event=self.on_event, **options)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def on_event(self, phase: str, job: Any, fields: dict) -> None:
        with self.cond:
            self.events.append((phase, job.id, fields))
            self.cond.notify_all()

    def start(self) -> Harness:
        self.thread = threading.Thread(target=self.fetcher.run, args=(self.stop,), daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(10)

    def wait_end(self, job: str, timeout: float = 30.0) -> tuple[str, dict]:
        def ended() -> tuple[str, dict] | None:
            with self.cond:
                return next(((phase, fields) for phase, jid, fields in self.events
                             if jid == job and phase in ("done", "failed")), None)

        return wait_for(ended, timeout, f"job {job} to end (events: {self.events})",
                        interval=0.2, wake=self.cond)

    def phases(self, job: str) -> list[str]:
        return [p for p, jid, _ in self.events if jid == job]


@pytest.fixture
def harness(tmp_path, clip) -> Iterator[Any]:
    made: list[Harness] = []

    def make(**kw: Any) -> Harness:
        h = Harness(tmp_path, clip, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ---- a misbehaving upload server ---------------------------------------------------------
class Quirky(http.server.BaseHTTPRequestHandler):
    """/stall reads a little then stops reading; /flaky answers 503 once, then stores;
    /forbidden answers 403 without reading the body."""

    stored: ClassVar[dict[str, bytes]] = {}
    hits: ClassVar[dict[str, int]] = {}
    auth: ClassVar[dict[str, str | None]] = {}
    release = threading.Event()

    def log_message(self, *args: Any) -> None:
        pass

    def do_PUT(self) -> None:
        name = self.path.split("?")[0]
        Quirky.hits[name] = Quirky.hits.get(name, 0) + 1
        Quirky.auth[name] = self.headers.get("Authorization")
        length = int(self.headers["Content-Length"])
        if name.startswith("/forbidden"):
            self.send_error(403, "Request has expired")
            return
        if name.startswith("/stall"):
            self.rfile.read(64 * 1024)
            Quirky.release.wait(30)
            return
        body = self.rfile.read(length)
        if name.startswith("/flaky") and Quirky.hits[name] == 1:
            self.send_error(503, "Slow Down")
            return
        Quirky.stored[name] = body
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def quirky() -> Iterator[str]:
    Quirky.stored, Quirky.hits, Quirky.auth = {}, {}, {}
    Quirky.release.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quirky)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    Quirky.release.set()
    server.shutdown()
    server.server_close()


# ---- the tests -------------------------------------------------------------------------------
def test_fetch_uploads_the_clip_to_nginx_and_releases_the_range(harness, nginx, clip) -> None:
    h = harness().start()
    ok, message, data = h.fetcher.submit("c1", {**RANGE, "upload_url":
                                                nginx.put_url("rw05/c1.mp4?X-Sig=secret")})
    assert ok, message
    assert message == "uploading 60 s of gate"
    assert data["to"] == nginx.put_url("rw05/c1.mp4")  # no query (a presigned URL's secret)
    assert h.protected == [("fetch-c1", "gate", RANGE["start"], RANGE["end"])]
    phase, fields = h.wait_end("c1")
    assert (phase, fields["status"], fields["tries"]) == ("done", 201, 1)
    uploaded = nginx.dir / "upload" / "rw05" / "c1.mp4"
    assert uploaded.read_bytes() == clip.read_bytes()
    assert probe(uploaded)["codec_name"] == "h264"
    assert h.phases("c1")[:2] == ["queued", "started"] and "progress" in h.phases("c1")
    assert h.released == ["fetch-c1"]
    assert h.fetcher.health()["queue"] == 0 and h.fetcher.health()["done"] == 1
    assert list((h.fetcher.spool).iterdir()) == []  # the exported file is gone


def test_403_fails_at_once_and_is_never_reported_done(harness, nginx) -> None:
    h = harness().start()
    url = f"http://127.0.0.1:{nginx.http_port}/forbidden/c2.mp4"
    assert h.fetcher.submit("c2", {**RANGE, "upload_url": url})[0]
    phase, fields = h.wait_end("c2")
    assert phase == "failed"
    assert "403" in fields["reason"] and fields["tries"] == 1
    assert "done" not in h.phases("c2") and "retrying" not in h.phases("c2")
    assert h.released == ["fetch-c2"]


def test_stall_mid_body_is_retried_then_failed(harness, quirky) -> None:
    h = harness(attempts=2, stall_s=1.0).start()
    assert h.fetcher.submit("c3", {**RANGE, "upload_url": quirky + "/stall/c3.mp4"})[0]
    phase, fields = h.wait_end("c3", timeout=60)
    assert phase == "failed"
    assert "gave up after 2 tries" in fields["reason"]
    assert "nothing for 1 s" in fields["reason"] or "no answer" in fields["reason"]
    assert h.phases("c3").count("retrying") == 1 and "done" not in h.phases("c3")
    assert Quirky.hits["/stall/c3.mp4"] == 2


def test_server_error_is_retried_and_the_whole_file_sent_again(harness, quirky, clip) -> None:
    h = harness().start()
    assert h.fetcher.submit("c4", {**RANGE, "upload_url": quirky + "/flaky/c4.mp4"})[0]
    phase, fields = h.wait_end("c4")
    assert (phase, fields["tries"]) == ("done", 2)
    assert "retrying" in h.phases("c4")
    assert Quirky.stored["/flaky/c4.mp4"] == clip.read_bytes()


def test_one_at_a_time_bounded_queue(harness, nginx) -> None:
    h = harness(queue_max=1)  # worker not started: everything stays queued
    url = nginx.put_url("q.mp4")
    assert h.fetcher.submit("a", {**RANGE, "upload_url": url})[:2] == \
        (True, "uploading 60 s of gate")
    ok, message, data = h.fetcher.submit("b", {**RANGE, "upload_url": url})
    assert (ok, message, data["position"]) == (True, "queued behind a (position 2)", 2)
    ok, message, _ = h.fetcher.submit("c", {**RANGE, "upload_url": url})
    assert not ok and message.startswith("upload queue full")
    assert [p[0] for p in h.protected] == ["fetch-a", "fetch-b"]


def test_queue_survives_a_restart(harness, nginx, tmp_path, clip) -> None:
    first = harness()
    for job in ("r1", "r2"):
        assert first.fetcher.submit(job, {**RANGE, "upload_url": nginx.put_url(f"{job}.mp4")})[0]
    assert (tmp_path / "uplink-queue.json").stat().st_mode & 0o777 == 0o600
    stale = tmp_path / "spool" / "r1.mp4"  # a half-exported clip left by a crash
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half")
    second = harness().start()  # a new process reading the same queue file
    assert [j.id for j in second.fetcher.jobs] == ["r1", "r2"]
    assert second.wait_end("r1")[0] == "done" and second.wait_end("r2")[0] == "done"
    assert (nginx.dir / "upload" / "r2.mp4").is_file()
    assert second.released == ["fetch-r1", "fetch-r2"]
    assert (nginx.dir / "upload" / "r1.mp4").read_bytes() == clip.read_bytes()  # not "half"


@pytest.mark.parametrize(("args", "reason"), [
    ({"camera": "nope"}, "unknown camera 'nope'"),
    ({"end": RANGE["start"]}, "`end` must be after `start`"),
    ({"start": NOW - 90_000, "end": NOW - 60}, "at most 3600 s per fetch"),
    ({"start": "+100", "end": "+200"}, "in the future"),  # from the test's own now
    ({"upload_url": "file:///etc/passwd"}, "must be http:// or https://, not 'file'"),
    ({"upload_url": "ftp://example.org/x"}, "not 'ftp'"),
    ({"upload_url": "http://user:pw@example.org/x"}, "must not carry a user or password"),
    ({"upload_url": "http://no-such-host.invalid/x"}, "does not resolve"),
])
def test_bad_input_is_refused_with_a_reason(harness, args, reason) -> None:
    h = harness()
    now = time.time()  # NOW is taken at collection, maybe many minutes before this test runs
    args = {k: now + float(v) if isinstance(v, str) and v.startswith("+") else v
            for k, v in args.items()}
    ok, message, _ = h.fetcher.submit("x", {**RANGE, "upload_url": "http://127.0.0.1:9/x",
                                            **args})
    assert not ok and reason in message, message
    assert h.protected == [] and h.fetcher.jobs == []


def test_no_footage_is_refused(harness) -> None:
    h = harness()
    h.footage_s = 0.0
    ok, message, _ = h.fetcher.submit("x", {**RANGE, "upload_url": "http://127.0.0.1:9/x"})
    assert not ok and message.startswith("no footage of gate from")
    assert h.protected == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://localhost/x",
                                 "http://[::1]/x", "http://192.168.1.10/x",
                                 "http://10.0.0.5/x", "http://169.254.169.254/latest"])
def test_the_node_itself_and_its_lan_are_refused_unless_allowed(harness, url) -> None:
    h = harness(allow_lan=False)
    ok, message, _ = h.fetcher.submit("x", {**RANGE, "upload_url": url})
    assert not ok and "allow_lan" in message, message
    assert h.fetcher.jobs == []


def test_alarm_clip_survives_an_outage_and_a_restart(harness, nginx, clip) -> None:
    from uplink.fetch import Job

    nginx.stop()  # the clip server is unreachable
    first = harness(attempts=1).start()  # `attempts` does not bound alarm clips
    job = Job("a1-gate", "gate", NOW - 30, NOW - 10, nginx.put_url("clips/a1-gate.mp4"),
              kind="alarm", max_tries=0, token=True)
    assert first.fetcher.add_alarm_clip(job)
    assert not first.fetcher.add_alarm_clip(job)  # the same alarm again: one clip
    assert first.protected == [("alarm-a1-gate", "gate", NOW - 30, NOW - 10)]
    wait_for(lambda: first.phases("a1-gate").count("retrying") >= 2, 20, "two retries")
    assert "failed" not in first.phases("a1-gate")
    first.close()  # the node restarts during the outage
    nginx.start()
    second = harness(attempts=1).start()
    assert [j.id for j in second.fetcher.jobs] == ["a1-gate"]
    phase, fields = second.wait_end("a1-gate")
    assert phase == "done" and fields["tries"] >= 3
    assert (nginx.dir / "upload" / "clips" / "a1-gate.mp4").read_bytes() == clip.read_bytes()
    assert second.released == ["alarm-a1-gate"]


def test_a_clip_not_due_yet_lets_others_go_first(harness, nginx) -> None:
    from uplink.fetch import Job

    h = harness()
    later = Job("a2-gate", "gate", NOW - 30, NOW + 3600, nginx.put_url("later.mp4"),
                kind="alarm", not_before=time.time() + 3600, max_tries=0)
    h.fetcher.add_alarm_clip(later)
    h.start()
    assert h.fetcher.submit("f1", {**RANGE, "upload_url": nginx.put_url("f1.mp4")})[0]
    assert h.wait_end("f1")[0] == "done"
    assert h.phases("a2-gate") == ["queued"]


def test_the_bearer_token_goes_only_with_alarm_clips(harness, quirky) -> None:
    from uplink.fetch import Job

    h = harness(token="t0k3n")
    h.fetcher.add_alarm_clip(Job("a3-gate", "gate", NOW - 30, NOW - 10, quirky + "/clip/a3",
                                 kind="alarm", max_tries=0, token=True))
    assert h.fetcher.submit("f2", {**RANGE, "upload_url": quirky + "/fetch/f2"})[0]
    h.start()
    assert h.wait_end("a3-gate")[0] == "done" and h.wait_end("f2")[0] == "done"
    assert Quirky.auth == {"/clip/a3": "Bearer t0k3n", "/fetch/f2": None}


def test_a_fetch_while_live_takes_the_whole_cap_says_it_waits(harness, nginx) -> None:
    h = harness()
    h.fetcher.bandwidth.cap_kbps = 1000
    h.fetcher.bandwidth.reserve("gate", 1000)
    ok, message, _ = h.fetcher.submit("w1", {**RANGE, "upload_url": nginx.put_url("w1.mp4")})
    assert ok and message.endswith("waiting for bandwidth: live video takes the whole cap "
                                   "(1000 kbps)"), message


def test_a_damaged_queue_file_is_moved_aside_not_fatal(harness, tmp_path) -> None:
    (tmp_path / "uplink-queue.json").write_text("{not json")
    h = harness()
    assert h.fetcher.jobs == []
    assert [p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")] == \
        ["uplink-queue.json"]
