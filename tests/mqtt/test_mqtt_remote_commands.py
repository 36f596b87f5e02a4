"""Signed commands through a real broker: replies, owners on the bus, refusals, fuzzing."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mqtt_helpers import BridgeNode, Recorder, node_config, validate

from devtools.broker import LocalBroker
from firmware.events import Command
from mqtt.signing import sign_command
from tests.shared_broker import SharedBroker
from tests.waiting import wait_for


def _replies(rec: Any) -> dict[Any, dict]:
    """The first reply to each command id."""
    first: dict[Any, dict] = {}
    for doc in rec.json("/reply"):
        first.setdefault(doc["id"], doc)
    return first


def _send(rec: Any, root: str, action: str, payload: bytes | dict) -> None:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    rec.client.publish(f"{root}/cmd/{action}", body, qos=1)


def test_commands_replied_and_routed(broker: SharedBroker, recorder_factory: Any,
                                     tmp_path: Path, keypair: Any, caplog: Any) -> None:
    root = broker.root("rw05")
    private, public = keypair
    rec = recorder_factory(broker.port, f"{root}/#")
    cfg = node_config(tmp_path, broker, command_keys=[public], command_timeout_s=1.0)
    with BridgeNode(cfg) as node:
        rec.wait_for(lambda m: any(p == b"online" for _, p, *_ in m))
        acted: list[Command] = []

        def alarm_owner(cmd: Command) -> None:  # what the alarm area does with `light`
            if cmd.action == "light":
                acted.append(cmd)
                cmd.reply(True, "light on", {"until": 123.0})

        node.bus.subscribe(Command, alarm_owner, name="test-alarm")
        ping = sign_command(private, node="rw05", action="ping")
        light = sign_command(private, node="rw05", action="light",
                             args={"state": "on", "for_s": 60})
        siren = sign_command(private, node="rw05", action="siren", args={"state": "on"})
        unsigned = {k: v for k, v in sign_command(private, node="rw05", action="light",
                                                  args={"state": "on"}).items() if k != "sig"}
        for action, doc in [("ping", ping), ("light", light), ("siren", siren),
                            ("light", unsigned), ("ping", ping)]:  # last: a replay
            _send(rec, root, action, doc)
        _send(rec, root, "ping", b"\x00not json")
        replies = rec.wait_for(lambda m: len(rec.json("/reply")) >= 6 and _replies(rec), 10)
        assert replies[ping["id"]]["ok"] and replies[ping["id"]]["message"] == "pong"
        assert replies[light["id"]] == {**replies[light["id"]], "ok": True,
                                        "message": "light on", "data": {"until": 123.0}}
        assert replies[siren["id"]]["ok"] is False
        assert replies[siren["id"]]["message"] == "not available on this node"
        assert replies[unsigned["id"]]["message"] == "unsigned command"
        assert replies[None]["message"] == "payload is not JSON"
        assert [r["message"] for r in rec.json("/reply") if r["id"] == ping["id"]] == \
            ["pong", "replayed command id"]
        assert [c.id for c in acted] == [light["id"]], "only the signed light command acted"
        assert acted[0].key_id == light["key_id"] and acted[0].args == {"state": "on",
                                                                         "for_s": 60}
        for reply in rec.json("/reply"):
            validate("reply", reply)
        assert node.bridge.commands_refused == 3
        refusals = [r.getMessage() for r in caplog.records if "refused command" in r.getMessage()]
        assert len(refusals) == 3 and any("unsigned command" in m for m in refusals)


@pytest.fixture(scope="module")
def fuzz_node(tmp_path_factory: Any, keypair: Any,
              session_broker: LocalBroker) -> Iterator[Any]:
    """One node + reply recorder for every Hypothesis example, on the session broker under
    a prefix of its own (fast: that broker sends small packets without Nagle delay)."""
    broker = SharedBroker.for_test(session_broker, "fuzz_node")
    # A node id of its own: it lives through the module's other tests, and two nodes of
    # one id on one broker take each other's connection over (client id `ronda-<id>`).
    cfg = node_config(tmp_path_factory.mktemp("fuzz"), broker, node="fuzz05",
                      command_keys=[keypair[1]], command_timeout_s=1.0)
    with BridgeNode(cfg) as node:
        node.acted = []
        node.bus.subscribe(Command, node.acted.append, name="test-owner")
        node.root = broker.root("fuzz05")
        node.rec = Recorder(broker.port, f"{node.root}/reply").start()
        wait_for(lambda: node.bridge.link.connected, 15, "the connection")
        yield node
        node.rec.stop()


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=40)},
    optional={"ts": st.integers(min_value=0, max_value=2**40) | st.text(max_size=5),
              "action": st.sampled_from(["siren", "light", "ping", "arm", "x"]),
              "args": st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=6),
                                      max_size=3),
              "sig": st.text(max_size=90)}))
def test_fuzz_through_broker_every_id_answered_nothing_acted(fuzz_node: Any,
                                                            doc: dict) -> None:
    node = fuzz_node
    doc = {**doc, "id": f"{uuid.uuid4().hex[:6]}-{doc['id']}"}
    _send(node.rec, node.root, str(doc.get("action", "siren")), doc)
    reply = node.rec.wait_for(lambda m: _replies(node.rec).get(doc["id"]), 10)
    validate("reply", reply)
    assert reply["ok"] is False
    assert not node.acted


def test_reply_lock_exactly_once(broker: SharedBroker, recorder_factory: Any, tmp_path: Path,
                                 keypair: Any) -> None:
    root = broker.root("rw05")
    private, public = keypair
    rec = recorder_factory(broker.port, f"{root}/reply")
    cfg = node_config(tmp_path, broker, command_keys=[public], command_timeout_s=0.5)
    with BridgeNode(cfg) as node:
        answered_late = threading.Event()

        def late_twice(cmd: Command) -> None:  # answers after the timeout, twice
            threading.Timer(1.0, lambda: (cmd.reply(True, "a"), cmd.reply(True, "b"),
                                          answered_late.set())).start()

        node.bus.subscribe(Command, late_twice, name="late")
        wait_for(lambda: node.bridge.link.connected, 15, "the connection")
        arm = sign_command(private, node="rw05", action="arm", args={"mode": "armed"})
        _send(rec, root, "arm", arm)
        rec.wait_for(lambda m: m, 10)
        wait_for(answered_late.is_set, 10, "the late answers")
        time.sleep(0.5)  # on purpose: the late answers must not reach the broker
    assert [r["message"] for r in rec.json("/reply")] == ["not available on this node"]
