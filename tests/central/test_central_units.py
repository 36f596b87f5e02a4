"""Small parts of the central service: config errors, the command key's mode, the
maintenance rules, the webhook signature, the node's published position."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from central import views
from central.commands import CommandKeyError, load_key
from central.settings import CentralSettings
from central.webhooks import signature
from mqtt import schema
from mqtt.payloads import health_payload
from mqtt.signing import generate_keypair, private_key_pem

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "central", *args], cwd=ROOT, text=True,
                          capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, **kw)


def test_bad_config_names_the_field_and_exits_78(tmp_path: Path):
    bad = tmp_path / "central.toml"
    bad.write_text('[web]\nport = "eighty"\n[[agencies]]\nname = "no id"\n[mqtt]\nbrokr = 1\n')
    proc = run_cli("--config", str(bad), "check-config")
    assert proc.returncode == 78
    for field in ("web.port", "agencies.0.id", "mqtt.brokr"):
        assert field in proc.stderr, proc.stderr
    good = tmp_path / "ok.toml"
    good.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/db.sqlite3"\n')
    assert run_cli("--config", str(good), "check-config").returncode == 0
    assert "schema version 2" in run_cli("--config", str(good), "migrate").stdout


def test_the_command_key_must_be_private(tmp_path: Path):
    key = tmp_path / "command.pem"
    key.write_bytes(private_key_pem(generate_keypair()[0]))
    key.chmod(0o644)
    with pytest.raises(CommandKeyError, match="chmod 600"):
        load_key(key)
    key.chmod(0o600)
    assert load_key(key) is not None
    with pytest.raises(CommandKeyError, match="No such file"):
        load_key(tmp_path / "missing.pem")


def _row(health: dict | None = None, **kw) -> dict:
    now = time.time()
    row = {"id": "rw-1", "status": "online", "status_ts": now, "last_seen": now,
           "health_ts": now, "health_received": now, "min_seq": None, "max_seq": None,
           "events": 0}
    row.update(kw)
    row["health_problems"] = json.dumps(views.health_problems(
        health or {}, row["health_ts"], row["health_received"]))
    return row


def test_maintenance_rules_name_each_problem():
    s, now = CentralSettings(), time.time()
    assert views.problems(_row({"clock_synced": True}), s, now) == []
    sick = {"clock_synced": False, "undervoltage": True,
            "cameras": {"gang": {"state": "offline", "fps": None, "reason": "no route to host"},
                        "pos": {"state": "online", "fps": 15}},
            "storage": {"state": "degraded", "reason": "disk-full"},
            "outbox": {"drops": 3}}
    found = views.problems(_row(sick), s, now)
    assert found == ["camera gang offline: no route to host", "disk: disk-full",
                     "undervoltage (power supply)", "clock not synchronised",
                     "3 events dropped from a full outbox"]
    old = now - 2 * 86400
    silent = _row({"clock_synced": True}, status="offline", status_ts=old, last_seen=old)
    assert views.problems(silent, s, now) == ["offline for 2880 min", "silent for 48 h"]
    assert views.node_state(silent, s, now, set()) == "offline"
    just_gone = _row({"clock_synced": True}, status="offline", status_ts=now - 10)
    assert views.node_state(just_gone, s, now, set()) == "degraded"
    assert views.node_state(_row({"clock_synced": True}), s, now, {"rw-1"}) == "alarm"
    skewed = _row({"clock_synced": True}, health_ts=now - 600)
    assert views.problems(skewed, s, now) == ["clock off by more than 2 min"]
    holes = _row({"clock_synced": True}, min_seq=1, max_seq=10, events=7)
    assert views.problems(holes, s, now) == ["3 events lost (seq gaps)"]


def test_webhook_signature_is_hmac_sha256_of_timestamp_and_body():
    body = b'{"a":1}'
    expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert signature(b"s3cret", 1700000000, body) == f"sha256={expected}"


def test_health_carries_the_posts_name_and_position_and_stays_valid():
    report = {"node": "rw-1", "name": "Pos RW 1", "location": [-7.48, 110.22], "ts": 1.0,
              "components": {}}
    doc = health_payload(report, mqtt={"connected": True},
                         outbox={"depth": 0, "bytes": 0, "drops": 0})
    assert doc["name"] == "Pos RW 1" and doc["location"] == [-7.48, 110.22]
    jsonschema.validate(doc, schema.load("health"))
    doc = health_payload({"node": "rw-1", "ts": 1.0}, mqtt={"connected": True},
                         outbox={"depth": 0, "bytes": 0, "drops": 0})
    assert doc["location"] is None
    jsonschema.validate(doc, schema.load("health"))


def test_a_dispatch_is_leased_by_one_sender_at_a_time(db):
    from central.webhooks import WebhookSender

    with db.tx() as cur:
        cur.execute("INSERT INTO dispatches (alarm, agency, author, ts, body, next_try)"
                    " VALUES (1, 'damkar', 'ops', 0, '{}', 0)")
    first, second = WebhookSender(db, CentralSettings()), WebhookSender(db, CentralSettings())
    dispatch = db.scalar("SELECT id FROM dispatches")
    assert first._lease(dispatch)
    assert not second._lease(dispatch)


def test_footage_upload_urls_are_one_time_expiring_and_size_limited(tmp_path: Path) -> None:
    from central.db import Database
    from central.footage import Footage, UploadRefused, _digest
    from central.settings import FootageSettings

    db = Database(f"sqlite:///{tmp_path}/c.sqlite3").migrate()
    footage = Footage(db, FootageSettings(dir=tmp_path / "f", max_mb=1), None)
    now = time.time()
    for fid, token, expires, state in (("a", "good", now + 60, "accepted"),
                                       ("b", "old", now - 1, "accepted"),
                                       ("c", "used", now + 60, "uploaded")):
        with db.tx() as cur:
            cur.execute("INSERT INTO footage (id, token, node, camera, start_ts, end_ts, author,"
                        " requested, expires, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (fid, _digest(token), "rw1", "gate", 1.0, 2.0, "ops", now, expires,
                         state))

    def refused(token: str, length: int | None) -> int:
        with pytest.raises(UploadRefused) as exc:
            footage.upload_target(token, length)
        return exc.value.status

    assert footage.upload_target("good", 1000)["id"] == "a"
    assert refused("guess", 1000) == 403
    assert refused("old", 1000) == 403
    assert refused("used", 1000) == 409
    assert refused("good", None) == 411
    assert refused("good", 1024 * 1024 + 1) == 413
    footage.check_head(b"\0\0\0\x18ftypisom")  # an MP4 passes
    with pytest.raises(UploadRefused) as exc:
        footage.check_head(b"<html><body>")
    assert exc.value.status == 415
    # without a signing key the request is refused before anything is recorded
    with pytest.raises(ValueError, match="commands are not configured"):
        footage.request("ops", "rw1", {"camera": "gate", "start": 1, "end": 2}, "http://x")
    with pytest.raises(ValueError, match="end must be after"):
        footage.request("ops", "rw1", {"camera": "gate", "start": 2, "end": 1}, "http://x")
    assert db.one("SELECT count(*) AS n FROM footage")["n"] == 3
    db.close()


def test_login_throttle_counts_failures_per_address_in_a_sliding_window() -> None:
    from central.throttle import LoginThrottle

    throttle = LoginThrottle(max_failures=3, window_s=60, max_addresses=2)
    for t in (0, 10, 20):
        assert throttle.retry_after("10.0.0.1", now=t) == 0
        throttle.failed("10.0.0.1", now=t)
    assert throttle.retry_after("10.0.0.1", now=21) == pytest.approx(39)
    assert throttle.retry_after("10.0.0.2", now=21) == 0  # another address is not locked out
    assert throttle.retry_after("10.0.0.1", now=60.5) == 0  # the first failure left the window
    throttle.failed("10.0.0.1", now=61)
    assert throttle.retry_after("10.0.0.1", now=62) > 0
    throttle.succeeded("10.0.0.1")
    assert throttle.retry_after("10.0.0.1", now=62) == 0
    for i in range(5):  # memory stays bounded under a flood of addresses
        throttle.failed(f"10.1.0.{i}", now=70)
    assert len(throttle.failures) == 2
