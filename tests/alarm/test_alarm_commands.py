"""Remote commands (siren, light, ack, arm) arriving as verified `Command`s on the bus."""

from __future__ import annotations

import datetime as dt
import threading
import time
import zoneinfo

import pytest
from alarm_kit import wait_for

from firmware.events import AlarmEvent, ArmStateChanged, Command, OutputChanged, PanicEvent


class Replies:
    """Collects replies; fails if a command is answered more than once."""

    def __init__(self) -> None:
        self.got: dict[str, list[tuple[bool, str, dict]]] = {}
        self.lock = threading.Lock()

    def command(self, action: str, args, key_id: str = "cc-ops-1") -> Command:
        cid = f"c{len(self.got) + 1}"
        self.got[cid] = []

        def reply(ok: bool, message: str, data: dict) -> None:
            with self.lock:
                self.got[cid].append((ok, message, data))

        return Command(id=cid, action=action, args=args, key_id=key_id, reply=reply)

    def wait(self, cmd: Command, timeout: float = 3.0) -> tuple[bool, str, dict]:
        wait_for(lambda: self.got[cmd.id], timeout, f"reply to {cmd.action}")
        time.sleep(0.05)  # on purpose: a second reply would come right after the first
        assert len(self.got[cmd.id]) == 1, f"replied {len(self.got[cmd.id])} times"
        return self.got[cmd.id][0]


@pytest.fixture
def replies() -> Replies:
    return Replies()


def send(node, replies: Replies, action: str, args, **kw) -> tuple[bool, str, dict]:
    cmd = replies.command(action, args, **kw)
    node.bus.publish(cmd)
    return replies.wait(cmd)


def test_ack_command_clears_the_alarm(make_node, replies):
    node = make_node()
    node.tap()
    raised = node.wait(PanicEvent)
    ok, message, data = send(node, replies, "ack", {})
    assert ok and data["alarm_id"] == raised.alarm_id, message
    assert node.pin("siren").state is False and node.pin("light").state is False
    cleared = node.wait(AlarmEvent, phase="cleared")
    assert cleared.source == "cmd:cc-ops-1"
    ok, message, _ = send(node, replies, "ack", {})
    assert ok and "no active alarm" in message


def test_ack_with_a_stale_alarm_id_does_not_clear_a_newer_alarm(make_node, replies):
    node = make_node()
    node.tap()
    first = node.wait(PanicEvent)
    node.tap("ack")
    node.tap()
    second = wait_for(lambda: [e for e in node.of(PanicEvent) if e.id != first.id],
                      what="a second alarm")[0]
    ok, message, _ = send(node, replies, "ack", {"alarm_id": first.alarm_id})
    assert not ok and "not the active alarm" in message
    # still sounding (the pin itself follows the rhythm: off 1.5 s of every 2.6 s)
    assert node.panel.siren.active and node.panel.siren.label == "panic"
    ok, _, data = send(node, replies, "ack", {"alarm_id": second.alarm_id})
    assert ok and data["alarm_id"] == second.alarm_id and node.pin("siren").state is False


def test_siren_on_for_seconds_then_off_by_itself(make_node, replies):
    node = make_node()
    sent = time.time()
    ok, message, data = send(node, replies, "siren",
                             {"state": "on", "for_s": 0.3, "pattern": "titir"})
    assert ok, message
    assert data["siren"] == "titir" and sent + 0.3 <= data["until"] < sent + 1.3
    change = node.wait(OutputChanged, name="siren", state="titir")
    assert change.cause == "cmd:cc-ops-1" and change.until == data["until"]
    wait_for(lambda: node.of(OutputChanged, name="siren", state="off", cause="timeout"), 3,
             "the siren to stop")
    assert node.pin("siren").state is False
    assert node.controller.alarm is None  # a remote siren is not an alarm


def test_siren_duration_is_capped_at_siren_max_s(make_node, replies):
    node = make_node(alarm={"siren_max_s": 0.4})
    ok, _, data = send(node, replies, "siren", {"state": "on", "for_s": 3600})
    assert ok and data["until"] - time.time() <= 0.4
    wait_for(lambda: not node.pin("siren").state and not node.panel.siren.active, 2,
             "the cap")


def test_siren_off_during_an_alarm_silences_but_does_not_clear(make_node, replies):
    node = make_node()
    node.tap()
    ok, _, _ = send(node, replies, "siren", {"state": "off"})
    assert ok and node.pin("siren").state is False
    silenced = node.wait(AlarmEvent, phase="silenced")
    assert silenced.source == "cmd:cc-ops-1"
    assert node.controller.alarm is not None and node.panel.light.active


def test_light_commands(make_node, replies):
    node = make_node()
    ok, _, data = send(node, replies, "light", {"state": "on", "mode": "steady", "for_s": 5})
    assert ok and data["light"] == "on" and node.pin("light").state is True
    ok, _, data = send(node, replies, "light", {"state": "on", "mode": "strobe"})
    assert ok and data["light"] == "strobe" and node.panel.light.label == "strobe"
    ok, _, _ = send(node, replies, "light", {"state": "off"})
    assert ok and node.pin("light").state is False
    assert node.wait(OutputChanged, name="light", state="off", cause="cmd:cc-ops-1")


def test_unknown_args_are_ignored_and_named(make_node, replies):
    node = make_node()
    ok, message, data = send(node, replies, "siren",
                             {"state": "on", "for_s": 0.2, "volume": 11, "__class__": "x"})
    assert ok, message
    assert data["ignored"] == ["__class__", "volume"] and "ignored unknown args" in message
    ok, _, data = send(node, replies, "ack", {"force": True})
    assert ok and data["ignored"] == ["force"]


@pytest.mark.parametrize(("action", "args", "why"), [
    ("siren", {"state": "loud"}, "state must be"),
    ("siren", {}, "state must be"),
    ("siren", {"state": "on", "for_s": "ten"}, "for_s must be a number"),
    ("siren", {"state": "on", "for_s": True}, "for_s must be a number"),
    ("siren", {"state": "on", "for_s": -1}, "positive"),
    ("siren", {"state": "on", "for_s": float("nan")}, "for_s must be a number"),
    ("siren", {"state": "on", "pattern": "disco"}, "unknown pattern"),
    ("siren", {"state": "on", "pattern": ["panic"]}, "unknown pattern"),
    ("light", {"state": "on", "mode": "rave"}, "mode must be"),
    ("arm", {"mode": "sometimes"}, "mode must be one of"),
    ("arm", {"mode": "schedule", "schedule": "22:00-05:00"}, "list of"),
    ("arm", {"mode": "schedule", "schedule": ["25:00-05:00"]}, "HH:MM-HH:MM"),
    ("siren", ["on"], "state must be"),
    ("siren", None, "state must be"),
])
def test_bad_args_are_refused_once_and_change_nothing(make_node, replies, action, args, why):
    node = make_node()
    ok, message, _ = send(node, replies, action, args)
    assert not ok and why in message
    assert node.pin("siren").state is False and node.pin("light").state is False
    assert node.ctx.shared["armed"]() is True  # still the configured "armed"


def test_commands_of_other_areas_are_left_alone(make_node, replies):
    node = make_node()
    cmd = replies.command("snapshot", {"camera": "gang"})
    node.bus.publish(cmd)
    time.sleep(0.2)  # on purpose: time for a wrong reply to come
    assert replies.got[cmd.id] == []


def test_a_reply_that_raises_is_not_called_twice(make_node):
    node = make_node()
    calls = []

    def reply(ok, message, data):
        calls.append(ok)
        raise RuntimeError("mqtt publish failed")

    node.bus.publish(Command(id="x", action="ack", args={}, key_id="k", reply=reply))
    wait_for(lambda: calls, 10, "the reply")
    time.sleep(0.1)  # on purpose: time for a wrong second call to come
    assert calls == [True]


def test_arm_schedule_is_offered_published_and_kept_over_restart(make_node, replies, tmp_path):
    jakarta = zoneinfo.ZoneInfo("Asia/Jakarta")
    node = make_node(alarm={"timezone": "Asia/Jakarta"})
    armed = node.ctx.shared["armed"]
    night = dt.datetime(2026, 11, 28, 23, 30, tzinfo=jakarta)
    noon = dt.datetime(2026, 11, 28, 12, 0, tzinfo=jakarta)
    assert armed(noon.timestamp()) is True  # configured mode "armed"
    ok, _, data = send(node, replies, "arm", {"mode": "schedule", "schedule": ["22:00-05:00"]})
    assert ok and data["mode"] == "schedule"
    assert armed(night.timestamp()) is True and armed(noon.timestamp()) is False
    assert armed(dt.datetime(2026, 11, 29, 4, 59, tzinfo=jakarta)) is True
    assert armed(dt.datetime(2026, 11, 29, 5, 0, tzinfo=jakarta)) is False
    change = node.wait(ArmStateChanged, cause="cmd:cc-ops-1")
    assert change.mode == "schedule"
    ok, _, _ = send(node, replies, "arm", {"mode": "disarmed"})
    assert ok and armed(night.timestamp()) is False
    # the panic button is always live, armed or not
    node.tap()
    assert node.pin("siren").state is True
    node.stop()
    node.started = False
    again = make_node(state_dir=node.ctx.state_dir, alarm={"timezone": "Asia/Jakarta"})
    assert again.ctx.shared["armed"](night.timestamp()) is False
    assert again.wait(ArmStateChanged, cause="start").mode == "disarmed"


def test_ack_with_an_id_is_checked_under_the_lock(make_node):
    # The old alarm is acked locally and a new press raises another one between the
    # remote ack's id check and its ack: the late ack must leave the new alarm alone.
    from firmware.alarm.remote import RemoteControl

    node = make_node()
    c = node.controller
    node.tap()
    wait_for(lambda: c.alarm is not None)
    old = c.alarm.alarm_id
    real_ack = c.ack

    def racing_ack(source, **kw):
        if source.startswith("cmd:"):
            real_ack("key:ack")
            node.tap()
        return real_ack(source, **kw)

    c.ack = racing_ack
    got = []
    remote = RemoteControl(c, None, node.bus.publish)
    remote.handle(Command(id="c1", action="ack", args={"alarm_id": old}, key_id="k",
                          reply=lambda ok, m, d: got.append((ok, m))))
    assert c.alarm is not None and c.alarm.alarm_id != old, "the late ack cleared the new alarm"
    assert node.panel.siren.active  # sounding (the pin follows the rhythm)
    assert got and got[0][0] is False and "not the active alarm" in got[0][1]
