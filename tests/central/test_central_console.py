"""End to end with real parts: Mosquitto, PostgreSQL, a real node (`ronda run`, mock pins),
the console (`ronda-central serve`) in headless Chromium, an agency's webhook receiver.

Press the node's panic button -> the alarm sounds and flashes on the console -> an operator
claims and acknowledges -> "silence the siren" sends a signed command -> the node's siren
goes off and its reply shows -> audit rows -> dispatch -> the agency got a signed POST
(after one refused try). Screenshots of the map and the alarm queue are kept.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from central_browser import chromium, login, wait_js
from central_console_kit import Console, RealNode, WebhookReceiver, write_console

from central.db import Database
from central.devtools.fleet import CityFleet
from central.mqtt_client import ClientOptions
from tests.waiting import wait_for

NODE = "e2e-rw01"


def _jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (40, 90, 160)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture
def pg_url(postgres) -> str:
    import uuid

    return postgres.url(f"e2e_{uuid.uuid4().hex[:8]}")


@pytest.mark.slow
def test_panic_to_console_ack_silence_audit_and_agency_webhook(tmp_path: Path, broker, pg_url):
    receiver = WebhookReceiver(b"damkar-shared-secret", fail_first=1)
    config, public = write_console(tmp_path, pg_url, broker.url, receiver)
    console = Console(config, tmp_path / "console.log")
    node = RealNode(tmp_path, NODE, broker.url, public, location=[-7.4797, 110.2177])
    other = RealNode(tmp_path, "e2e-rw02", broker.url, public, location=[-7.4702, 110.2301])
    # simulated posts around them (status, health with positions, wills; no random events)
    fleet = CityFleet(ClientOptions(broker=broker.url), nodes=60, rate_per_node=1e-9,
                      duration_s=20, crash_fraction=0.0)
    sim = threading.Thread(target=fleet.run, daemon=True)
    sim.start()
    db = Database(pg_url)
    try:
        with chromium() as driver:
            login(driver, console.url, "ops", "ops-password")
            wait_js(driver, "window.ronda && window.ronda.ready", 20, "the console")
            # online, or degraded when this machine's clock is not NTP-synchronised
            wait_js(driver, f"document.querySelector('circle.post[data-node=\"{NODE}\"]')"
                    " && document.querySelector('circle.post[data-node=\"e2e-rw02\"]')",
                    30, "both posts on the map")
            wait_js(driver, "document.querySelectorAll('circle.post').length >= 62", 30,
                    "the simulated posts too")
            assert driver.execute_script(
                f"return document.querySelector('circle.post[data-node=\"{NODE}\"]')"
                ".getAttribute('class')") in ("post online", "post degraded")
            map_png = tmp_path / "central-map.png"
            driver.save_screenshot(str(map_png))
            print(f"\nscreenshot of the map: {map_png}")
            assert not driver.execute_script("return ronda.sounding")

            node.press_panic()
            wait_js(driver, f"document.querySelector('#alarms li.alarm.new[data-node=\"{NODE}\"]')",
                    20, "the alarm in the queue")
            wait_js(driver, "document.body.classList.contains('alarm-flash') && ronda.sounding",
                    5, "the console to flash and sound")
            wait_js(driver, "ronda.beeps > 0", 5, "a beep")
            wait_js(driver, f"document.querySelector('circle.post.alarm[data-node=\"{NODE}\"]')",
                    15, "the post red on the map")
            queue_png = tmp_path / "central-alarm-queue.png"
            driver.save_screenshot(str(queue_png))
            print(f"screenshot of the alarm queue: {queue_png}")
            card = f"#alarms li[data-node=\"{NODE}\"]"

            def click(action: str) -> None:
                driver.execute_script(
                    f"document.querySelector('{card} button[data-action={action}]').click()")

            wait_for(lambda: db.scalar("SELECT state FROM outputs WHERE node = ? AND"
                                       " name = 'siren'", (NODE,)) not in (None, "off"), 15,
                     "the siren sounding at the post")
            click("claim")
            wait_js(driver, f"document.querySelector('{card}.claimed')", 10, "claimed")
            assert not driver.execute_script("return ronda.sounding")  # claimed: quiet
            driver.execute_script(f"document.querySelector('{card} input[data-field=note]')"
                                  ".value = 'Pak RT called: smoke behind the mosque';")
            click("note")
            wait_js(driver, f"[...document.querySelectorAll('{card} .note')].some(n => "
                    "n.textContent === 'ops: Pak RT called: smoke behind the mosque')", 10,
                    "the note on the card")
            click("ack")
            wait_js(driver, f"document.querySelector('{card}.acked') ||"
                    " !document.querySelector('" + card + "')", 10, "acknowledged")
            alarm_id = db.scalar("SELECT id FROM alarms WHERE node = ?", (NODE,))
            # an acknowledged alarm leaves the open queue; the operator silences from the API
            # the page uses (same call as the button)
            reply = driver.execute_async_script(
                "const done = arguments[0]; fetch('/api/alarms/" + str(alarm_id) + "/silence',"
                " {method: 'POST', headers: {'X-Ronda': '1', 'Content-Type': 'application/json'},"
                " body: '{}'}).then(r => r.json()).then(done);")
            assert reply["ok"] is True, reply
            assert "siren off" in reply["message"]
            wait_for(lambda: db.scalar("SELECT state FROM outputs WHERE node = ? AND"
                                       " name = 'siren'", (NODE,)) == "off", 10,
                     "the siren off at the post")
            dispatched = driver.execute_async_script(
                "const done = arguments[0]; fetch('/api/alarms/" + str(alarm_id) + "/dispatch',"
                " {method: 'POST', headers: {'X-Ronda': '1', 'Content-Type': 'application/json'},"
                " body: JSON.stringify({agency: 'damkar'})}).then(r => r.json()).then(done);")
            assert dispatched["ok"] is True and dispatched["phone"] == "113"
            wait_for(lambda: receiver.received, 20, "the signed webhook")
            assert receiver.attempts >= 2  # the first try was refused and retried
            sent = receiver.received[0]
            assert sent["alarm"]["node"] == NODE and sent["alarm"]["kind"] == "panic"
            assert sent["alarm"]["location"] == [-7.4797, 110.2177]
            assert sent["operator"] == "ops"

            # the post's page: health history, outputs, its events (the panic among them)
            driver.get(f"{console.url}/node/{NODE}")
            wait_js(driver, "window.ronda.ready && document.querySelectorAll("
                    "'#node-events tr').length >= 1", 15, "the node page")
            assert driver.execute_script("return document.querySelectorAll("
                                         "'#node-charts figure').length") == 4
            summary = driver.execute_script("return document.getElementById("
                                            "'node-summary').textContent")
            assert "0 events lost" in summary and "-7.4797" in summary
            outputs = driver.execute_script("return document.getElementById("
                                            "'node-outputs').textContent")
            assert "siren: off" in outputs
            node_png = tmp_path / "central-node-page.png"
            driver.save_screenshot(str(node_png))
            print(f"screenshot of the node page: {node_png}")
            driver.get(f"{console.url}/maintenance")
            wait_js(driver, "window.ronda.ready", 15, "the maintenance page")

        audit = db.query("SELECT username, action, target, result FROM audit ORDER BY id")
        actions = [(r["username"], r["action"], r["result"]) for r in audit]
        assert ("ops", "alarm.claim", "ok") in actions
        assert ("ops", "alarm.note", "ok") in actions
        assert ("ops", "alarm.ack", "ok") in actions
        assert ("ops", "command.siren", "sent") in actions
        assert ("ops", "command.siren.reply", "ok: siren off") in actions
        assert ("ops", "alarm.dispatch", "ok") in actions
        assert ("system", "webhook", "delivered") in actions
        cmd = db.one("SELECT * FROM commands WHERE node = ?", (NODE,))
        assert cmd["author"] == "ops" and json.loads(cmd["args"]) == {"state": "off"}
    finally:
        node.stop()
        other.stop()
        sim.join(60)
        console.stop()
        receiver.close()
        db.close()


@pytest.mark.slow
def test_roles_viewer_cannot_act_agency_sees_only_its_kinds(tmp_path: Path, broker, pg_url):
    # tiles from a URL nothing serves: the <image> elements are there, the dots still drawn
    config, _ = write_console(tmp_path, pg_url, broker.url, None,
                              tiles_url="http://127.0.0.1:9/tiles/{z}/{x}/{y}.png")
    console = Console(config, tmp_path / "console.log")
    db = Database(pg_url)
    try:
        now = time.time()
        with db.tx() as cur:
            for i, kind in enumerate(("panic", "fire", "medical")):
                cur.execute("INSERT INTO alarms (node, alarm_id, kind, raised_ts, updated)"
                            " VALUES (?,?,?,?,?)", ("rw-x", f"a{i}", kind, now, now))
            cur.execute("INSERT INTO camera_snapshots (node, camera, jpeg, received) VALUES"
                        " (?,?,?,?)", ("rw-x", "gang", _jpeg(), now))
            cur.execute("INSERT INTO nodes (id, status, last_seen, lat, lon) VALUES"
                        " ('rw-x', 'online', ?, -7.48, 110.22), ('rw-y', 'online', ?, NULL,"
                        " NULL)", (now, now))
        with chromium() as driver:
            login(driver, console.url, "view", "wrong-password")
            wait_js(driver, "location.search.includes('failed')", 10, "the refusal")
            login(driver, console.url, "view", "view-password")
            wait_js(driver, "window.ronda && window.ronda.ready", 20, "the console")
            wait_js(driver, "document.querySelectorAll('#alarms li.alarm').length === 3", 10,
                    "three alarms")
            assert driver.execute_script("return document.querySelectorAll("
                                         "'#alarms button').length") == 0
            # an alarm stored by an ingest elsewhere (not this process) appears by itself
            with db.tx() as cur:
                cur.execute("INSERT INTO alarms (node, alarm_id, kind, raised_ts, updated)"
                            " VALUES (?,?,?,?,?)", ("rw-y", "a9", "panic", now, time.time()))
            wait_js(driver, "document.querySelectorAll('#alarms li.alarm').length === 4", 10,
                    "the fourth alarm, live")
            tiles = driver.execute_script("return [...document.querySelectorAll("
                                          "'image.tile')].map(i => i.getAttribute('href'))")
            assert tiles and all(t.startswith("http://127.0.0.1:9/tiles/") for t in tiles)
            assert driver.execute_script(
                "return document.querySelector('text.grid-label').textContent") == \
                "1 posts without a position"
            assert driver.execute_script("return document.querySelector("
                                         "'circle.post.alarm[data-node=\"rw-x\"]') !== null")
            status = driver.execute_async_script(
                "const done = arguments[0]; fetch('/api/alarms/1/ack', {method: 'POST',"
                " headers: {'X-Ronda': '1'}}).then(r => done(r.status));")
            assert status == 403
            assert driver.execute_async_script(
                "const done = arguments[0]; fetch('/api/audit').then(r => done(r.status));") \
                == 403
            # the node page shows the camera's latest picture
            driver.get(f"{console.url}/node/rw-x")
            wait_js(driver, "document.querySelector('#node-cameras img') &&"
                    " document.querySelector('#node-cameras img').naturalWidth === 64", 15,
                    "the camera's snapshot")
            # a viewer neither asks for footage nor starts live video: no form, no button, 403
            assert driver.execute_script(
                "return document.getElementById('footage-form').hidden"
                " && !document.querySelector('button.watch-live')")
            for action in ("footage", "live"):
                status = driver.execute_async_script(
                    f"const done = arguments[0]; fetch('/api/nodes/rw-x/{action}', {{method:"
                    " 'POST', headers: {'X-Ronda': '1', 'Content-Type': 'application/json'},"
                    " body: JSON.stringify({camera: 'gang', start: 1, end: 2, viewer: 'v'})})"
                    ".then(r => done(r.status));")
                assert status == 403, action
            driver.delete_all_cookies()
            login(driver, console.url, "damkar", "damkar-password")
            wait_js(driver, "location.pathname === '/agency/damkar' && window.ronda.ready", 20,
                    "the agency's view")
            wait_js(driver, "document.querySelectorAll('#agency-alarms tr').length === 3", 10,
                    "damkar's three alarms (fire, two panics)")
            status = driver.execute_async_script(
                "const done = arguments[0]; fetch('/api/agency/psc119')"
                ".then(r => done(r.status));")
            assert status == 403
            driver.delete_all_cookies()
            login(driver, console.url, "boss", "boss-password")
            driver.get(f"{console.url}/audit")
            wait_js(driver, "window.ronda.ready && [...document.querySelectorAll('#audit tr')]"
                    ".some(tr => tr.textContent.includes('refused'))", 15,
                    "the audit log with the refused login")
        # no session: no data
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{console.url}/api/alarms")
        assert err.value.code == 401
        logins = {(r["username"], r["result"])
                  for r in db.query("SELECT * FROM audit WHERE action = 'login'")}
        assert {("view", "refused"), ("view", "ok"), ("damkar", "ok")} <= logins
    finally:
        console.stop()
        db.close()
