"""Live video on the node page, end to end: "Watch live" -> a signed `live` -> a real node
pushes its camera to the city's media server (Debian's nginx-rtmp, HLS out) -> the console
relays the HLS to signed-in users -> hls.js plays it in headless Chromium (currentTime
advances) -> "Stop live" and leaving the page each send `live-stop`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from central_browser import chromium, login, wait_js
from central_console_kit import Console, RealNode, write_console

from central.db import Database
from devtools.media_server import LocalNginx, nginx_available
from devtools.rtsp_camera import RtspTestCamera
from tests.waiting import wait_for

NODE = "live-rw08"
VIDEO = "document.getElementById('live-video')"


def post(url: str, cookie: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Cookie": f"ronda_session={cookie}", "X-Ronda": "1", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def replies(db: Database, action: str) -> list[str]:
    return [r["result"] for r in db.query("SELECT result FROM audit WHERE action = ?"
                                          " ORDER BY id", (f"command.{action}.reply",))]


@pytest.mark.slow
def test_watch_live_plays_in_chromium_and_stops_when_the_page_closes(tmp_path, broker):
    why = nginx_available()
    if why:
        pytest.fail(why)
    db_url = f"sqlite:///{tmp_path}/central.sqlite3"
    with LocalNginx() as nginx, RtspTestCamera() as cam:
        hls = f"http://127.0.0.1:{nginx.http_port}/hls/{{node}}-{{camera}}.m3u8"
        config, public = write_console(tmp_path, db_url, broker.url, None,
                                       extra={"live": {"hls_url": hls, "ttl_s": 60}})
        console = Console(config, tmp_path / "console.log")
        node = RealNode(tmp_path, NODE, broker.url, public, extra={
            "cameras": [{"name": "gate", "url": cam.plain_url}],
            "detect": {"enabled": False},
            "uplink": {"media_url": nginx.rtmp_url("{node}-{camera}")}})
        db = Database(db_url)
        try:
            wait_for(lambda: db.one("SELECT 1 FROM nodes WHERE id = ? AND health LIKE ?",
                                    (NODE, '%"gate"%')), 60, "the node's health with its camera")
            with chromium() as driver:
                login(driver, console.url, "ops", "ops-password")
                # signed in (the home page) before going on: a navigation started while the
                # sign-in POST is in flight can be overtaken by its redirect to "/"
                wait_js(driver, "location.pathname === '/' && window.ronda && window.ronda.ready",
                        30, "the home page after signing in")
                driver.get(f"{console.url}/node/{NODE}")
                wait_js(driver, f"location.pathname === '/node/{NODE}'", 10, "the node page")
                wait_js(driver, "window.ronda && window.ronda.ready", 20, "the node page")
                button = "document.querySelector('button.watch-live[data-camera=gate]')"
                wait_js(driver, button, 20, "the Watch live button")
                driver.execute_script(f"{button}.click()")
                wait_js(driver, f"{VIDEO}.currentTime > 1", 120, "the live video playing")
                first = driver.execute_script(f"return {VIDEO}.currentTime")
                wait_js(driver, f"{VIDEO}.currentTime > {first} + 2", 30,
                        "the live video's time advancing")
                assert driver.execute_script(f"return {VIDEO}.videoWidth") == 640
                assert any(r.startswith("ok: pushing gate (main) to rtmp://")
                           for r in replies(db, "live"))
                shot = tmp_path / "central-live.png"
                driver.save_screenshot(str(shot))
                print(f"\nscreenshot of live video: {shot}")
                # the relay is for signed-in users only
                with pytest.raises(urllib.error.HTTPError) as anon:
                    urllib.request.urlopen(f"{console.url}/api/live/{NODE}/gate/index.m3u8")
                assert anon.value.code == 401

                # a second page of this console watching the same camera, then closing:
                # the push stays for the first page (no live-stop sent)
                cookie = driver.get_cookie("ronda_session")["value"]
                for path in ("live", "live-stop"):
                    answer = post(f"{console.url}/api/nodes/{NODE}/{path}", cookie,
                                  {"camera": "gate", "viewer": "otherpage"})
                    assert answer["ok"], answer
                assert "stays live: 1 other page" in answer["message"]
                assert replies(db, "live-stop") == []

                driver.find_element("id", "live-stop").click()
                wait_for(lambda: replies(db, "live-stop"), 20, "the live-stop reply")
                assert replies(db, "live-stop")[0].startswith("ok: gate: live stopped")

                # leaving the page while watching stops the push too
                driver.execute_script(f"{button}.click()")
                wait_js(driver, f"{VIDEO}.currentTime > 1", 60, "the live video again")
                driver.get(f"{console.url}/maintenance")
                wait_for(lambda: len(replies(db, "live-stop")) >= 2, 20,
                         "the live-stop sent when the page closed")
                assert replies(db, "live-stop")[1].startswith("ok: gate: live stopped")
        finally:
            node.stop()
            console.stop()
            db.close()
