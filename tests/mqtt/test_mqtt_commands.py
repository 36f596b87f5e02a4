"""The command verifier: signatures, time window, replay, schema; fuzzed with Hypothesis."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import validate

from mqtt.commands import ACTIONS, CommandVerifier
from mqtt.signing import generate_keypair, sign_command, signed_bytes

NOW = 1_800_000_000


def verifier(public: str, **kw: Any) -> CommandVerifier:
    return CommandVerifier("rw05", [public], clock=lambda: NOW, **kw)


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


VALID = [("siren", {"state": "on"}), ("siren", {"state": "on", "for_s": 30}),
         ("light", {"state": "off"}), ("snapshot", {}), ("snapshot", {"camera": "gate"}),
         ("arm", {"mode": "schedule"}), ("ack", {}), ("ack", {"alarm_id": "a1"}), ("ping", {}),
         ("siren", {"state": "on", "pattern": "titir"}),
         ("light", {"state": "on", "mode": "strobe"}),
         ("arm", {"mode": "schedule", "schedule": ["22:00-05:00", "12:00-13:30"]}),
         ("snapshot", {"camera": "gate", "timeout": 2.5})]


@pytest.mark.parametrize(("action", "args"), VALID)
def test_valid_signed_commands_accepted(keypair: Any, action: str, args: dict) -> None:
    private, public = keypair
    doc = sign_command(private, node="rw05", action=action, args=args, ts=NOW)
    validate("command", doc)
    verdict = verifier(public).verify(action, raw(doc))
    assert verdict.ok, verdict.reason
    assert (verdict.id, verdict.action, verdict.args) == (doc["id"], action, args)
    assert verdict.key_id == doc["key_id"]


def test_signed_bytes_are_documented_form() -> None:
    assert signed_bytes("rw05", "c1", 5, "siren", {"state": "on", "for_s": 2}) == (
        b'ronda-cmd-v1\n{"action":"siren","args":{"for_s":2,"state":"on"},'
        b'"id":"c1","node":"rw05","ts":5}')


@pytest.mark.parametrize(("mutate", "reason"), [
    (lambda d: d.pop("sig"), "unsigned"),
    (lambda d: d.update(sig=base64.b64encode(b"\0" * 64).decode()), "bad signature"),
    (lambda d: d.update(sig="not base64!"), "not base64"),
    (lambda d: d["args"].update(state="off"), "bad signature"),  # tampered after signing
    (lambda d: d.update(id="other"), "bad signature"),
    (lambda d: d.update(ts=d["ts"] + 1), "bad signature"),
    (lambda d: d.update(extra=1), "unknown field"),
    (lambda d: d.update(ts="now"), "`ts` must be an integer"),
    (lambda d: d.update(id=""), "`id` must be"),
])
def test_refusals(keypair: Any, mutate: Any, reason: str) -> None:
    private, public = keypair
    doc = sign_command(private, node="rw05", action="siren", args={"state": "on"}, ts=NOW)
    mutate(doc)
    verdict = verifier(public).verify("siren", raw(doc))
    assert not verdict.ok and reason in verdict.reason


def test_other_node_key_time_replay_action_args(keypair: Any) -> None:
    private, public = keypair
    v = verifier(public)
    for_other = sign_command(private, node="rw06", action="ping", ts=NOW)
    assert "bad signature" in v.verify("ping", raw(for_other)).reason
    stranger, _ = generate_keypair()
    assert "bad signature" in v.verify(
        "ping", raw(sign_command(stranger, node="rw05", action="ping", ts=NOW))).reason
    late = sign_command(private, node="rw05", action="ping", ts=NOW - 121)
    assert "allowed ±120 s" in v.verify("ping", raw(late)).reason
    assert v.verify("ping", raw(sign_command(private, node="rw05", action="ping",
                                             ts=NOW + 119))).ok
    once = raw(sign_command(private, node="rw05", action="ping", ts=NOW))
    assert v.verify("ping", once).ok
    assert v.verify("ping", once).reason == "replayed command id"
    unknown = sign_command(private, node="rw05", action="reboot", ts=NOW)
    assert "unknown action" in v.verify("reboot", raw(unknown)).reason
    wrong_topic = sign_command(private, node="rw05", action="siren", args={"state": "on"}, ts=NOW)
    assert "sent on the topic" in v.verify("ping", raw(wrong_topic)).reason
    for action, args in [("siren", {"state": "loud"}), ("siren", {"state": "on", "for_s": -1}),
                         ("siren", {"state": "off", "for_s": 5}), ("arm", {"mode": "x"}),
                         ("ping", {"x": 1}), ("snapshot", {"camera": 7}),
                         ("light", {"state": "on", "mode": "disco"}),
                         ("arm", {"mode": "schedule", "schedule": ["25:00-05:00"]}),
                         ("arm", {"mode": "armed", "schedule": "22:00-05:00"}),
                         ("snapshot", {"timeout": 60})]:
        doc = sign_command(private, node="rw05", action=action, args=args, ts=NOW)
        verdict = v.verify(action, raw(doc))
        assert "bad arguments" in verdict.reason, (action, args, verdict)
        assert verdict.id == doc["id"]


def test_oversize_refused_unread(keypair: Any) -> None:
    private, public = keypair
    doc = sign_command(private, node="rw05", action="ping", ts=NOW)
    doc["pad"] = "x" * 5000
    verdict = verifier(public).verify("ping", raw(doc))
    assert not verdict.ok and "exceeds 4096" in verdict.reason and verdict.id is None


def test_replay_memory_is_seeded_and_persisted(keypair: Any) -> None:
    from mqtt.commands import ReplayGuard

    private, public = keypair
    kept: list[tuple[str, float]] = []
    guard = ReplayGuard(keep_s=250, persist=lambda i, t: kept.append((i, t)))
    doc = sign_command(private, node="rw05", action="ping", ts=NOW)
    assert verifier(public, replay=guard).verify("ping", raw(doc)).ok
    assert kept == [(doc["id"], NOW)]
    after_restart = ReplayGuard(keep_s=250)
    after_restart.load(kept)
    assert verifier(public, replay=after_restart).verify("ping", raw(doc)).reason == \
        "replayed command id"


# ---- fuzzing -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=6)
command_like = st.fixed_dictionaries(
    {},
    optional={"id": st.text(max_size=140) | json_values,
              "ts": st.integers(min_value=NOW - 300, max_value=NOW + 300) | json_values,
              "action": st.sampled_from([*ACTIONS, "reboot", ""]) | json_values,
              "args": st.dictionaries(st.sampled_from(["state", "for_s", "mode", "camera",
                                                       "alarm_id", "x"]),
                                      json_values, max_size=3) | json_values,
              "key_id": st.text(max_size=20),
              "sig": st.binary(min_size=0, max_size=70).map(
                  lambda b: base64.b64encode(b).decode()) | json_values})


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=300) | command_like.map(raw) | json_values.map(raw),
       topic=st.sampled_from([*ACTIONS, "reboot"]))
def test_fuzz_garbage_never_accepted_never_crashes(keypair: Any, payload: bytes,
                                                   topic: str) -> None:
    verdict = verifier(keypair[1]).verify(topic, payload)
    assert not verdict.ok
    assert verdict.reason
    try:
        doc = json.loads(payload)
    except ValueError:
        return
    if isinstance(doc, dict) and isinstance(doc.get("id"), str) and 0 < len(doc["id"]) <= 128:
        assert verdict.id == doc["id"], "a well-formed id must be answered with that id"


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(action=st.sampled_from([*ACTIONS, "reboot"]),
       args=st.dictionaries(st.sampled_from(["state", "for_s", "mode", "camera", "alarm_id",
                                             "pattern", "schedule", "timeout"]),
                            st.sampled_from(["on", "off", "armed", "schedule", "gate", "strobe",
                                             5, 0, -3, 1e9, None, True, ["22:00-05:00"],
                                             ["9:00-10:00"], []]), max_size=3),
       skew=st.integers(min_value=-400, max_value=400),
       cmd_id=st.text(min_size=1, max_size=64),
       tamper=st.booleans())
def test_fuzz_signed_commands_accepted_exactly_when_valid(
        keypair: Any, action: str, args: dict, skew: int, cmd_id: str, tamper: bool) -> None:
    private, public = keypair
    doc = sign_command(private, node="rw05", action=action, args=args, cmd_id=cmd_id,
                       ts=NOW + skew)
    if tamper:
        doc["ts"] += 1
    verdict = verifier(public).verify(action, raw(doc))
    assert verdict.id == cmd_id
    try:
        import jsonschema
        validate("command", doc)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    expected = schema_ok and not tamper and abs(doc["ts"] - NOW) <= 120
    assert verdict.ok == expected, (doc, verdict)
