"""Fail safe: outputs off at start, on orderly stop, and after kill -9 with the
interrupted alarm reported on restart (a real child process, killed for real)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alarm_kit import wait_for

from drivers.process import spawn, terminate
from firmware.events import AlarmEvent, OutputChanged, PanicEvent, ProtectClip

CHILD = Path(__file__).with_name("alarm_child.py")
ROOT = Path(__file__).resolve().parents[2]
ALARM_OUTPUTS = ("siren", "light", "buzzer")  # the status LED blinks "booting" at start


def any_on(pins: dict) -> bool:
    return any(pins[name] for name in ALARM_OUTPUTS)


class Child:
    """The alarm area in a child process, spoken to over stdin/stdout."""

    def __init__(self, state_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = spawn([sys.executable, str(CHILD), str(state_dir)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.put(json.loads(raw))

    def expect(self, predicate, timeout: float = 10.0, history: bool = True) -> dict:
        """The first line matching `predicate`: among those already read (unless
        `history` is false, for a fresh answer), else the next ones."""
        if history:
            for line in self.seen:
                if predicate(line):
                    return line
        def said() -> tuple[dict] | None:
            while True:
                try:
                    line = self.lines.get_nowait()
                except queue.Empty:
                    return None
                self.seen.append(line)
                if predicate(line):
                    return (line,)

        try:
            return wait_for(said, timeout, "the child's line")[0]
        except AssertionError:
            raise AssertionError(f"child never said that; it said: {self.seen[-10:]}") from None

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()


@pytest.mark.slow
def test_kill_9_during_an_alarm_then_restart_reports_it_with_outputs_off(tmp_path):
    state = tmp_path / "state"
    first = Child(state)
    try:
        ready = first.expect(lambda m: m.get("ready"))
        assert not any_on(ready["pins"])  # off from the first instant
        first.send("press panic")
        pins = first.expect(lambda m: "pins" in m, history=False)["pins"]
        assert pins["siren"] and pins["light"]
        raised = first.expect(lambda m: m.get("msg") == PanicEvent.__name__)
        wait_for(lambda: (state / "alarm.json").exists(), 5, "the alarm to be persisted")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(5)
    finally:
        terminate(first.proc)

    second = Child(state)
    try:
        ready = second.expect(lambda m: m.get("ready"))
        assert not any_on(ready["pins"])
        recovered = second.expect(lambda m: m.get("msg") == AlarmEvent.__name__
                                  and m.get("phase") == "recovered")
        assert recovered["alarm_id"] == raised["alarm_id"]
        assert recovered["source"] == "restart" and recovered["kind"] == "panic"
        clip = second.expect(lambda m: m.get("msg") == ProtectClip.__name__)
        assert clip["event_id"] == raised["alarm_id"] and clip["start"] < raised["ts"]
        wait_for(lambda: not (state / "alarm.json").exists(), 5, "the report to be done")
        second.send("pins")
        assert not any_on(second.expect(lambda m: "pins" in m, history=False)["pins"])
        # the retained output topics are corrected: every output announced off
        offs = [m for m in second.seen if m.get("msg") == OutputChanged.__name__]
        assert {m["name"] for m in offs if m["state"] == "off"} >= {"siren", "light"}
        # and the panel is live again
        second.send("press panic")
        assert second.expect(lambda m: "pins" in m, history=False)["pins"]["siren"]
        # orderly stop: outputs off
        second.send("stop")
        stopped = second.expect(lambda m: m.get("stopped"))
        assert not any(stopped["pins"].values())
        assert second.proc.wait(10) == 0
    finally:
        terminate(second.proc)


def test_orderly_stop_switches_everything_off(make_node):
    node = make_node()
    node.press()
    siren, light = node.pin("siren"), node.pin("light")
    assert siren.state and light.state
    assert node.panel.siren.active and node.panel.light.active
    node.stop()
    node.started = False
    assert not siren.state and not light.state


def test_restart_without_an_interrupted_alarm_reports_nothing(make_node, tmp_path):
    node = make_node()
    node.tap()
    node.tap("ack")
    wait_for(lambda: node.of(AlarmEvent, phase="cleared"), what="cleared")
    wait_for(lambda: not (node.ctx.state_dir / "alarm.json").exists(), what="file removed")
    node.stop()
    node.started = False
    again = make_node(state_dir=node.ctx.state_dir)
    again.settle()  # a `recovered` from start-up would be here by now
    assert again.of(AlarmEvent, phase="recovered") == []


def test_damaged_state_file_is_ignored(make_node, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "alarm.json").write_text('{"alarm_id": ')
    node = make_node(state_dir=state)
    node.settle()  # a `recovered` from start-up would be here by now
    assert node.of(AlarmEvent, phase="recovered") == []
    node.tap()
    assert node.pin("siren").state
