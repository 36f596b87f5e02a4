"""The uplink's small parts: command arguments (verifier and JSON Schema agree), URL
checks, the shared cap and its pacer, `[uplink]` config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from firmware import config
from mqtt.commands import check_args
from mqtt.schema import load
from tests.waiting import wait_for
from uplink.bandwidth import Bandwidth, Pacer
from uplink.targets import Refused, check_upload_url, local_reason, public

REPO = Path(__file__).resolve().parents[2]
URL = "https://bucket.example/clip.mp4?X-Amz-Signature=abc"

CASES = [  # action, args, accepted
    ("live", {"camera": "gate"}, True),
    ("live", {"camera": "gate", "stream": "sub", "ttl_s": 600}, True),
    ("live", {"camera": "gate", "ttl_s": 365 * 86400}, False),
    ("live", {"camera": "gate", "ttl_s": 0}, False),
    ("live", {"camera": "gate", "stream": "4k"}, False),
    ("live", {"camera": "gate", "for_s": 60}, False),
    ("live", {}, False),
    ("live-stop", {"camera": "gate"}, True),
    ("live-stop", {}, False),
    ("fetch", {"camera": "gate", "start": 1, "end": 2, "upload_url": URL}, True),
    ("fetch", {"camera": "gate", "start": 1, "end": 2, "upload_url": "file:///etc/passwd"},
     False),
    ("fetch", {"camera": "gate", "start": 1, "end": 2}, False),
    ("fetch", {"camera": "gate", "start": "yesterday", "end": 2, "upload_url": URL}, False),
    ("fetch", {"camera": "gate", "start": 1, "end": 2, "upload_url": URL, "x": 1}, False),
]


@pytest.mark.parametrize(("action", "args", "accepted"), CASES)
def test_verifier_and_schema_agree_on_arguments(action, args, accepted) -> None:
    problem = check_args(action, args)
    assert (problem == "") == accepted, problem
    doc = {"id": "c1", "ts": 1, "action": action, "args": args, "sig": "AA=="}
    schema_ok = jsonschema.Draft202012Validator(load("command")).is_valid(doc)
    assert schema_ok == accepted


def test_a_year_of_ttl_is_refused_with_the_limit() -> None:
    assert "(0, 600]" in check_args("live", {"camera": "gate", "ttl_s": 31_536_000})
    assert check_args("fetch", {"camera": "g", "start": 5, "end": 5, "upload_url": URL}) == \
        "`end` must be after `start`"


def fake(*addresses: str):
    return lambda host, port: list(addresses)


def test_public_host_passes_and_connects_to_the_checked_address() -> None:
    target = check_upload_url(URL, resolver=fake("93.184.216.34"), own=set)
    assert (target.host, target.port, target.addresses) == ("bucket.example", 443,
                                                            ("93.184.216.34",))
    assert target.path == "/clip.mp4?X-Amz-Signature=abc"
    assert public(URL) == "https://bucket.example/clip.mp4"


@pytest.mark.parametrize(("addresses", "why"), [
    (("93.184.216.34", "10.1.2.3"), "a private network"),  # one bad answer is enough
    (("100.64.0.7",), "a private network"),  # carrier-grade NAT space
    (("fe80::1",), "a link-local network"),
    (("::ffff:127.0.0.1",), "loopback"),
    (("203.0.113.9",), "this node"),  # the node's own public address
])
def test_addresses_of_the_node_or_its_lan_are_refused(addresses, why) -> None:
    with pytest.raises(Refused, match=why):
        check_upload_url(URL, resolver=fake(*addresses), own=lambda: {"203.0.113.9"})
    assert check_upload_url(URL, allow_lan=True, resolver=fake(*addresses), own=set)


def test_local_reason_for_plain_public_address_is_empty() -> None:
    assert local_reason("8.8.8.8", set()) == ""


def test_pacer_holds_uploads_to_what_live_leaves() -> None:
    now = [0.0]
    band = Bandwidth(cap_kbps=1000)
    band.reserve("gate", 600)
    pacer = Pacer(band, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(10):
        pacer.wait(50_000)  # 10 x 50 kB = 4 Mbit at 400 kbps: about 10 s
    assert now[0] == pytest.approx(10.0, rel=0.1)
    assert Bandwidth(0).upload_kbps() is None


def test_config_names_the_bad_uplink_field(tmp_path) -> None:
    with pytest.raises(config.ConfigError, match=r"uplink\.media_url"):
        config.parse({"node": {"id": "rw05"}, "uplink": {"media_url": "http://cc/{node}"}})
    with pytest.raises(config.ConfigError, match=r"uplink\.media_url"):
        config.parse({"node": {"id": "rw05"}, "uplink": {"media_url": "rtmp://cc/{nod}"}})
    bad = tmp_path / "node.toml"
    bad.write_text('[node]\nid = "rw05"\n[uplink]\nmax_uplink_kbps = -5\n')
    run = subprocess.run([sys.executable, "-m", "firmware", "check-config", str(bad)],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 78, run.stdout + run.stderr
    assert "uplink.max_uplink_kbps" in run.stdout + run.stderr


def service(media_url: str | None = "rtmp://cc.example/live/{node}-{camera}?key={secret}",
            state: tuple[str, str] = ("online", ""), codec: str | None = "h264"):
    from uplink.live import LiveManager, Source
    from uplink.service import CameraAccess, Uplink
    from uplink.settings import UplinkSettings

    settings = UplinkSettings(media_url=media_url)
    cams = CameraAccess(names=lambda: ["gate"], source=lambda c, s: Source(["-i", "x"], codec),
                        state=lambda c: state)
    band = Bandwidth()
    live = LiveManager(band, on_state=lambda c, d: None, estimate_kbps=lambda s: 100)
    return Uplink(settings, "rw05", cams, band, live, None, secret="k3y")


@pytest.mark.parametrize(("kwargs", "args", "reason"), [
    ({}, {"camera": "nope"}, "unknown camera 'nope' (cameras: gate)"),
    ({"media_url": None}, {"camera": "gate"}, "no media server configured"),
    ({"state": ("offline", "wrong username or password (401)")}, {"camera": "gate"},
     "camera gate is offline: wrong username or password (401)"),
    ({"codec": "hevc"}, {"camera": "gate"}, "H.265, which RTMP (FLV) cannot carry"),
    ({}, {"camera": "gate", "ttl_s": 31_536_000}, "ttl_s must be in (0, 600]"),
])
def test_live_refusals_say_why(kwargs, args, reason) -> None:
    ok, message, _ = service(**kwargs).handle("c1", "live", args)
    assert not ok and reason in message, message


def test_fetch_without_recorder_and_live_stop_of_nothing() -> None:
    up = service()
    assert up.handle("c1", "fetch", {"camera": "gate"}) == \
        (False, "no recordings on this node ([recorder] is off)", {})
    assert up.handle("c2", "live-stop", {"camera": "gate"})[:2] == (True, "gate was not live")


def test_the_media_secret_never_shows() -> None:
    up = service()
    dest, where = up._destination("gate", "main")
    assert dest == "rtmp://cc.example/live/rw05-gate?key=k3y"
    assert "k3y" not in where and "k3y" not in up._redact(f"error pushing to {dest}")


def test_a_wall_that_does_not_fit_the_cap_says_so_and_waits() -> None:
    from uplink.live import LiveManager, Source

    docs = []
    live = LiveManager(Bandwidth(cap_kbps=50), on_state=lambda c, d: docs.append(d),
                       estimate_kbps=lambda s: 100)
    live.add_wall("gate", Source(["-i", "x"]), "rtmp://cc/x", "rtmp://cc/x")
    live.tick()
    live.tick()
    assert live.pushes == {}
    assert len(docs) == 1 and docs[0]["state"] == "off"  # said once, not every second
    assert docs[0]["reason"].startswith("not sent: the cap of 50 kbps is taken")


def test_ronda_cmd_takes_the_camera_as_value() -> None:
    from central.tools.cmd import command_args

    assert command_args("live", "gate", None) == {"camera": "gate"}
    assert command_args("live-stop", "gate", None) == {"camera": "gate"}
    assert command_args("fetch", "gate", None) == {"camera": "gate"}


def test_managed_process_takes_its_restart_delays_from_a_backoff() -> None:
    import random

    from drivers.managed import ManagedProcess
    from support.backoff import Backoff

    delays: set[float] = set()
    proc = ManagedProcess("fails", lambda: ["false"], backoff_min_s=5.0, backoff_cap_s=5.0,
                          backoff=Backoff(0.05, 0.2, min_s=0.01, rng=random.Random(7)))
    proc.start()
    wait_for(lambda: (delays.add(proc.last_delay_s), proc.restarts >= 4)[1], 10,
             "four restarts", interval=0.01)  # sampling each delay on the way
    proc.stop()
    assert proc.restarts >= 4  # with the plain 5 s doubling it would have restarted once
    delays.discard(0.0)
    assert delays and all(0.01 <= d <= 0.2 for d in delays)
