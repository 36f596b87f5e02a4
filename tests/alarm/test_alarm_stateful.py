"""Random sequences of presses, releases, acks and remote commands against the real
controller on mock pins; after every step the outputs, the state and the reports agree."""

from __future__ import annotations

import tempfile
from pathlib import Path

from alarm_kit import Node
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from firmware.events import AlarmEvent, Command, PanicEvent


class AlarmMachine(RuleBasedStateMachine):
    """A model: is an alarm active, how many presses, how many alarms so far."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory(prefix="ronda-alarm-sm-")
        zero = {"bounce_ms": 0}
        self.node = Node(Path(self.tmp.name), gpio={
            "panic": [{"pin": 17, "name": "pos", **zero},
                      {"pin": 22, "name": "dapur", "kind": "fire", **zero}],
            "ack": {"pin": 27, **zero}})
        self.node.bus.start()  # no component: this tests the controller, not the loop
        self.active = False
        self.presses = 0
        self.alarms = 0
        self.acks = 0
        self.down = {17: False, 22: False, 27: False}
        self.replies: list[bool] = []

    def teardown(self) -> None:
        self.node.controller.drain(5)
        self.node.panel.close()
        self.node.controller.close()
        self.node.bus.stop()
        self.tmp.cleanup()

    def _edge(self, pin: int, down: bool) -> None:
        mock = self.node.factory.pin(pin)
        (mock.drive_low if down else mock.drive_high)()
        self.down[pin] = down

    @rule(pin=st.sampled_from([17, 22]))
    def press(self, pin: int) -> None:
        if self.down[pin]:
            self._edge(pin, False)
        self._edge(pin, True)
        if self.active:
            self.presses += 1
        else:
            self.active, self.presses, self.alarms = True, 1, self.alarms + 1

    @rule(pin=st.sampled_from([17, 22, 27]))
    @precondition(lambda self: any(self.down.values()))
    def release(self, pin: int) -> None:
        if self.down[pin]:
            self._edge(pin, False)

    @rule()
    def ack_key(self) -> None:
        if self.down[27]:
            self._edge(27, False)
        self._edge(27, True)
        self.acks += self.active
        self.active = False

    @rule(args=st.one_of(st.just({}), st.dictionaries(st.text(max_size=5), st.integers())))
    def ack_command(self, args: dict) -> None:
        done: list[bool] = []
        cmd = Command(id="c", action="ack", args=args, key_id="k",
                      reply=lambda ok, msg, data: done.append(ok))
        # call the bus handler synchronously, as its thread would
        handler = next(s.handler for s in self.node.bus._subs if s.name == "alarm-commands")
        handler(cmd)
        assert len(done) == 1
        if done[0]:
            self.acks += self.active
            self.active = False

    @invariant()
    def outputs_follow_the_alarm(self) -> None:
        panel, controller = self.node.panel, self.node.controller
        assert (controller.alarm is not None) == self.active
        assert panel.siren.active == self.active and panel.light.active == self.active
        if self.active:
            assert controller.alarm.presses == self.presses
            assert self.node.pin("siren").state or panel.siren.label in ("panic", "fire")

    @invariant()
    def reports_match(self) -> None:
        self.node.controller.drain(5)
        self.node.bus.stop()  # deliver what is queued to the recorder, then go on
        self.node.bus.start()
        raised = self.node.of(PanicEvent) + [
            e for e in self.node.of(AlarmEvent, phase="raised") if not isinstance(e, PanicEvent)]
        assert len(raised) == self.alarms
        assert len(self.node.of(AlarmEvent, phase="cleared")) == self.acks


AlarmMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_alarm_state_machine = AlarmMachine.TestCase
