"""Footage on request, end to end: the operator asks on the node page -> the console signs a
`fetch` whose upload URL is the console itself -> a real node (camera, recorder, uplink)
exports the range and PUTs it -> the console shows the progress, keeps the MP4 (ffprobe
reads it), plays it in a <video> and offers it for download; the audit has the request.
The same console then shows its sign-in throttling per address."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from central_browser import chromium, login, wait_js
from central_console_kit import Console, RealNode, write_console

from central.db import Database
from devtools.rtsp_camera import RtspTestCamera
from tests.footage import recorded_segments
from tests.waiting import wait_for

NODE = "fetch-rw07"


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    return {**doc["streams"][0], **doc["format"]}


def put(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, data=body, method="PUT",
                                 headers={"Content-Type": "video/mp4"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def sign_in(port: int, source: str, password: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    conn.request("POST", "/login", body=f"username=ops&password={password}",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp




@pytest.mark.slow
def test_footage_request_from_the_node_page_uploads_plays_and_downloads(tmp_path, broker):
    footage_dir = tmp_path / "footage"
    config, public = write_console(tmp_path, f"sqlite:///{tmp_path}/central.sqlite3",
                                   broker.url, None,
                                   extra={"footage": {"dir": str(footage_dir), "max_mb": 50}})
    console = Console(config, tmp_path / "console.log")
    db = Database(f"sqlite:///{tmp_path}/central.sqlite3")
    with RtspTestCamera() as cam:
        node = RealNode(tmp_path, NODE, broker.url, public, extra={
            "cameras": [{"name": "gate", "url": cam.plain_url}],
            "recorder": {"path": str(tmp_path / "rec"), "segment_s": 2, "min_free": 0},
            "detect": {"enabled": False},
            # the console runs on loopback here, as a city's may on its private network
            "uplink": {"allow_lan": True}})
        try:
            # the post reports its camera, and has recorded a few segments
            wait_for(lambda: db.one("SELECT 1 FROM nodes WHERE id = ? AND health LIKE ?",
                                    (NODE, '%"gate"%')), 60, "the node's health with its camera")
            wait_for(lambda: len(recorded_segments(tmp_path / "rec")) >= 3, 60,
                     "three recorded segments to ask for")
            with chromium() as driver:
                login(driver, console.url, "ops", "ops-password")
                # signed in (the home page) before going on: a navigation started while the
                # sign-in POST is in flight can be overtaken by its redirect to "/"
                wait_js(driver, "location.pathname === '/' && window.ronda && window.ronda.ready",
                        30, "the home page after signing in")
                driver.get(f"{console.url}/node/{NODE}")
                wait_js(driver, f"location.pathname === '/node/{NODE}'", 10, "the node page")
                wait_js(driver, "window.ronda && window.ronda.ready", 20, "the node page")
                wait_js(driver, "!document.getElementById('footage-form').hidden", 20,
                        "the footage form")
                # the last 20 s (the form's fields are local time, to the second)
                driver.execute_script(
                    "const now = new Date(Date.now() - 2000);"
                    "document.getElementById('footage-start').value ="
                    " localInput(new Date(now.getTime() - 20000));"
                    "document.getElementById('footage-end').value = localInput(now);"
                    "document.getElementById('footage-camera').value = 'gate';"
                    "document.getElementById('footage-ask').click();")
                wait_js(driver, "/uploading|queued/.test("
                        "document.getElementById('footage-result').textContent)", 20,
                        "the node's acceptance")
                wait_js(driver, "document.querySelector('#footage-list li[data-state=uploaded]"
                        " video')", 90, "the uploaded footage on the page")
                assert driver.execute_script(
                    "return document.querySelector('#footage-list li').dataset.text"
                ).startswith("gate ")
                wait_js(driver, "document.querySelector('#footage-list video').readyState >= 1"
                        " && document.querySelector('#footage-list video').duration > 1", 30,
                        "the video's metadata in Chromium")
                href = driver.execute_script(
                    "return document.querySelector('#footage-list a[download]').href")
                cookie = driver.get_cookie("ronda_session")["value"]
            row = db.one("SELECT id, state, bytes, token FROM footage WHERE node = ?", (NODE,))
            assert row["state"] == "uploaded" and row["bytes"] > 10_000
            stored = footage_dir / f"{row['id']}.mp4"
            info = probe(stored)
            assert info["codec_name"] == "h264" and float(info["duration"]) >= 2
            assert stored.stat().st_size == row["bytes"]

            # the download is the stored file, named for the post and camera, with a session
            req = urllib.request.Request(href, headers={"Cookie": f"ronda_session={cookie}"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                assert resp.read() == stored.read_bytes()
                assert f'{NODE}-gate-' in resp.headers["Content-Disposition"]
            with pytest.raises(urllib.error.HTTPError) as anon:
                urllib.request.urlopen(href, timeout=10)
            assert anon.value.code == 401

            # the upload URL was for one use only; a made-up token gets nothing
            command = db.one("SELECT args FROM commands WHERE node = ? AND action = 'fetch'",
                             (NODE,))
            upload_url = json.loads(command["args"])["upload_url"]
            assert upload_url.startswith(f"{console.url}/footage/upload/{row['id']}.mp4?token=")
            token = upload_url.split("token=")[1]
            stored_bytes = stored.read_bytes()
            assert put(upload_url, stored_bytes) == 409
            assert put(f"{console.url}/footage/upload/{row['id']}.mp4?token=guess",
                       b"x" * 100) == 403
            assert put(f"{console.url}/footage/upload/x1.mp4?token={token}",
                       stored_bytes) == 403  # another request's token

            # the node's upload events reached the console; the audit has the whole story
            docs = [e["doc"] for e in db.query(
                "SELECT doc FROM events WHERE node = ? AND type = 'upload'", (NODE,))]
            assert "done" in {json.loads(d)["phase"] for d in docs}
            assert not any(token in d for d in docs)  # the token never went out in an event
            actions = [(r["username"], r["action"], r["result"]) for r in db.query(
                "SELECT username, action, result FROM audit ORDER BY id")]
            assert ("ops", "footage.request", "requested") in actions
            assert ("ops", "command.fetch", "sent") in actions
            assert any(a[:2] == ("ops", "command.fetch.reply") and a[2].startswith("ok")
                       for a in actions)
            assert (f"node:{NODE}", "footage.uploaded", "ok") in actions
            assert ("ops", "footage.download", "ok") in actions
            assert ("ops", "footage.view", "ok") in actions  # the <video> loading it

            # a console that cannot store (its footage dir is not a directory) answers 503,
            # which the node retries, and keeps nothing
            from central.footage import _digest

            with db.tx() as cur:
                cur.execute("INSERT INTO footage (id, token, node, camera, start_ts, end_ts,"
                            " author, requested, expires, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                            ("x1", _digest("tok"), NODE, "gate", 1.0, 2.0, "ops", time.time(),
                             time.time() + 60, "accepted"))
            footage_dir.rename(tmp_path / "footage.kept")
            footage_dir.write_text("not a directory")
            assert put(f"{console.url}/footage/upload/x1.mp4?token=tok", stored_bytes) == 503
            footage_dir.unlink()
            (tmp_path / "footage.kept").rename(footage_dir)
            assert put(f"{console.url}/footage/upload/x1.mp4?token=tok", stored_bytes) == 201
            assert (footage_dir / "x1.mp4").read_bytes() == stored_bytes

            # sign-in throttling: 5 failures from one address, then 429 even with the right
            # password; another address still signs in
            for _ in range(5):
                assert sign_in(console.port, "127.0.0.3", "wrong").status == 303
            refused = sign_in(console.port, "127.0.0.3", "ops-password")
            assert refused.status == 429 and int(refused.getheader("Retry-After")) > 0
            good = sign_in(console.port, "127.0.0.4", "ops-password")
            assert good.status == 303 and good.getheader("Location") == "/"
            assert db.one("SELECT 1 FROM audit WHERE action = 'login.throttled'"
                          " AND target = '127.0.0.3'")
        finally:
            node.stop()
            console.stop()
            db.close()
