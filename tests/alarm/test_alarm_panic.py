"""Panic button -> siren and light, events, clips; bounce, repeats, hold, cut-off, ack."""

from __future__ import annotations

import json
import threading
import time

from alarm_kit import wait_for

from firmware.events import AlarmEvent, OutputChanged, PanicEvent, ProtectClip, Snapshot


def test_press_drives_siren_and_light_before_the_callback_returns(make_node):
    node = make_node()
    siren, light = node.pin("siren"), node.pin("light")
    assert (siren.state, light.state) == (False, False)
    node.press()
    # drive_low runs the GPIO callback synchronously (as the GPIO library's thread would):
    # the outputs are already on when it returns, before any bus or disk work.
    assert siren.state is True and light.state is True
    raised = node.wait(PanicEvent)
    assert raised.phase == "raised" and raised.kind == "panic"
    assert raised.source == "button:panic:pos" and raised.id == raised.alarm_id
    clip = node.wait(ProtectClip, event_id=raised.alarm_id)
    assert clip.start == raised.ts - 30 and clip.end == raised.ts + 120 and clip.cameras == ()
    on = node.wait(OutputChanged, name="siren", state="panic")
    assert on.cause == "button:panic:pos" and on.until is not None
    saved = wait_for(lambda: (node.ctx.state_dir / "alarm.json").exists(), what="alarm.json")
    assert saved
    data = json.loads((node.ctx.state_dir / "alarm.json").read_text())
    assert data["alarm_id"] == raised.alarm_id and data["kind"] == "panic"


def test_fire_button_raises_a_fire_alarm_with_its_own_rhythm(make_node):
    node = make_node(alarm={"patterns": {"panic": [0.05, 0.05], "fire": [0.02, 0.2]},
                            "kind_patterns": {"fire": "fire"}})
    node.press("fire")
    event = node.wait(AlarmEvent, phase="raised")
    assert type(event) is AlarmEvent and event.kind == "fire"
    assert node.panel.siren.label == "fire"
    # the rhythm really plays on the pin: on 20 ms, off 200 ms, on again
    wait_for(lambda: not node.pin("siren").state, 2.0, "the first pause")
    wait_for(lambda: node.pin("siren").state, 2.0, "the second beat")


def test_bounce_is_one_press(make_node):
    node = make_node()
    pin = node.pin("panic")
    for _ in range(5):  # contact chatter within the 30 ms window
        pin.drive_low()
        pin.drive_high()
    pin.drive_low()
    button = node.panel.buttons[0]
    assert button.presses == 1 and button.bounces == 10
    node.wait(PanicEvent)
    assert node.controller.alarm.presses == 1


def test_repeated_presses_are_counted_not_new_alarms(make_node):
    node = make_node()
    node.tap()
    for _ in range(3):
        node.tap()
    node.tap("fire")  # another button during the alarm counts too
    assert node.controller.alarm.presses == 5
    node.tap("ack")
    cleared = node.wait(AlarmEvent, phase="cleared")
    assert cleared.presses == 5
    assert len(node.of(AlarmEvent, phase="raised")) == 1
    saved = node.controller.health()
    assert saved["alarms"] == 1 and saved["presses"] == 4


def test_siren_stops_at_siren_max_s_even_without_bus_or_ack(make_node):
    # The bus is never started: no subscriber runs, yet the siren must stop by itself.
    node = make_node(start=False, alarm={"siren_max_s": 0.3, "light_max_s": 60})
    siren, light = node.pin("siren"), node.pin("light")
    t0 = time.monotonic()
    node.press()
    assert siren.state is True
    wait_for(lambda: not node.panel.siren.active, 10, "the siren cut-off")
    assert time.monotonic() - t0 >= 0.25  # not before siren_max_s (how exact: bench/alarm.py)
    assert siren.state is False
    assert node.panel.light.active  # the light continues up to light_max_s
    assert light.state or wait_for(lambda: light.state, 2, "the strobe's next flash")
    assert node.controller.alarm is not None  # nobody acknowledged
    node.bus.start()
    silenced = node.wait(AlarmEvent, phase="silenced")
    assert silenced.source == "timeout"
    off = node.wait(OutputChanged, name="siren", state="off")
    assert off.cause == "timeout"
    node.started = True


def test_press_after_cutoff_sounds_again_in_the_same_alarm(make_node):
    node = make_node(alarm={"siren_max_s": 0.2})
    node.tap()
    wait_for(lambda: not node.panel.siren.active, 2.0, "the cut-off")
    node.tap()
    assert node.pin("siren").state is True
    assert node.controller.alarm.presses == 2
    assert len(node.of(AlarmEvent, phase="raised")) == 1


def test_alarm_clears_by_itself_when_siren_and_light_are_done(make_node):
    node = make_node(alarm={"siren_max_s": 0.2, "light_max_s": 0.4})
    node.tap()
    cleared = node.wait(AlarmEvent, phase="cleared", timeout=3)
    assert cleared.source == "timeout"
    assert not (node.ctx.state_dir / "alarm.json").exists() or wait_for(
        lambda: not (node.ctx.state_dir / "alarm.json").exists(), 2, "alarm.json removed")


def test_ack_key_silences_and_clears(make_node):
    node = make_node()
    node.tap()
    raised = node.wait(PanicEvent)
    wait_for(lambda: (node.ctx.state_dir / "alarm.json").exists(), what="alarm.json")
    node.tap("ack")
    assert node.pin("siren").state is False and node.pin("light").state is False
    cleared = node.wait(AlarmEvent, phase="cleared")
    assert cleared.alarm_id == raised.alarm_id and cleared.source == "key:ack"
    clips = wait_for(lambda: len(node.of(ProtectClip, event_id=raised.alarm_id)) == 2 and
                     node.of(ProtectClip, event_id=raised.alarm_id), what="the second clip")
    assert clips[1].end > clips[0].start and clips[1].start == clips[0].start
    wait_for(lambda: not (node.ctx.state_dir / "alarm.json").exists(), what="alarm.json gone")
    assert node.wait(OutputChanged, name="siren", state="off", cause="key:ack")
    # a fresh press after the ack is a new alarm
    node.tap()
    wait_for(lambda: len(node.of(AlarmEvent, phase="raised")) == 2, what="a second alarm")


def test_hold_policy_short_press_gives_feedback_but_no_alarm(make_node):
    node = make_node(alarm={"panic_policy": "hold", "hold_s": 1.0})
    buzzer, led = node.pin("buzzer"), node.pin("status_led")
    node.press()
    assert buzzer.state is True and led.state is True  # immediate feedback while holding
    assert node.pin("siren").state is False
    time.sleep(0.05)  # on purpose: a short press
    node.release()
    assert buzzer.state is False
    time.sleep(1.2)  # on purpose: past hold_s, and still no alarm
    assert node.pin("siren").state is False and node.controller.alarm is None
    assert node.controller.counts["short_holds"] == 1


def test_hold_policy_long_press_raises_after_hold_s(make_node):
    node = make_node(alarm={"panic_policy": "hold", "hold_s": 0.3})
    t0 = time.monotonic()
    node.press()
    wait_for(lambda: node.pin("siren").state, 2.0, "siren after the hold")
    assert time.monotonic() - t0 >= 0.28
    assert node.pin("buzzer").state is False  # feedback ends when the alarm starts
    node.release()
    event = node.wait(PanicEvent)
    assert event.source == "button:panic:pos"


def test_slow_subscribers_and_cameras_do_not_delay_the_siren(make_node):
    """Broker down and cameras absent look like this from the alarm: a bus subscriber that
    blocks (an MQTT outbox stuck on a dead network) and a snapshot call that hangs."""
    snapshot_over, subscriber_over = threading.Event(), threading.Event()

    def hanging_snapshot(camera, timeout=3.0):
        time.sleep(timeout)  # on purpose: a camera that hangs
        snapshot_over.set()

    def stuck(_event):
        time.sleep(5)  # on purpose: an MQTT outbox stuck on a dead network
        subscriber_over.set()

    node = make_node(start=False, shared={"snapshot": hanging_snapshot},
                     alarm={"snapshot_timeout_s": 1.0},
                     cameras=[{"name": "gang", "url": "rtsp://127.0.0.1:9/x"}])
    node.bus.subscribe(PanicEvent, stuck, name="stuck-mqtt")
    node.start()
    node.press()
    # sounding while both are still stuck: the press did not wait for them (how fast it
    # sounds is bench/alarm.py's figure, not a wall-clock bound here)
    assert node.pin("siren").state is True
    assert not snapshot_over.is_set() and not subscriber_over.is_set()
    assert node.wait(PanicEvent).kind == "panic"  # the other subscribers still get it


def test_every_camera_gets_a_snapshot_after_the_event(make_node):
    calls = []

    def snapshot(camera, timeout=3.0):
        calls.append((camera, timeout))
        if camera == "broken":
            raise OSError("connection refused")
        return b"\xff\xd8" + camera.encode()

    cams = [{"name": n, "url": f"rtsp://127.0.0.1:9/{n}"} for n in ("gang", "pos", "broken")]
    cams.append({"name": "off", "url": "rtsp://127.0.0.1:9/off", "enabled": False})
    node = make_node(shared={"snapshot": snapshot}, cameras=cams,
                     alarm={"snapshot_timeout_s": 2.0})
    node.press()
    raised = node.wait(PanicEvent)
    assert raised.snapshot is None  # the event does not wait for cameras
    wait_for(lambda: len(node.of(Snapshot)) == 2, 10, "two snapshots")
    node.settle()  # a third (of a camera that has none) would be here by now
    shots = {s.camera: s for s in node.of(Snapshot)}
    assert set(shots) == {"gang", "pos"} and shots["gang"].jpeg == b"\xff\xd8gang"
    assert all(s.ts >= raised.ts for s in shots.values())
    assert sorted(calls) == [("broken", 2.0), ("gang", 2.0), ("pos", 2.0)]


def test_wiring_variants_active_low_relay_and_buttons_to_3v3(make_node):
    node = make_node(gpio={
        "panic": [{"pin": 17, "pull_up": False, "name": "pos"},  # button to 3V3
                  {"pin": 22, "pull_up": "external", "active_high": False, "name": "gate"}],
        "siren": {"pin": 23, "active_high": False},  # active-low relay board
    })
    siren = node.pin("siren")
    assert siren.state is True  # off = high on an active-low board
    node.pin("panic").drive_high()  # pressed = high when wired to 3V3
    assert siren.state is False and node.panel.siren.active
    node.pin("panic").drive_low()
    time.sleep(0.04)  # on purpose: beyond the 30 ms bounce window
    gate = node.factory.pin(22)
    gate.drive_high()  # idle level set by the external pull-up
    time.sleep(0.04)  # on purpose: beyond the 30 ms bounce window
    gate.drive_low()  # pressed
    assert node.controller.alarm.presses == 2
    node.tap("ack")
    assert siren.state is True
    json.dumps(node.components[0].health())  # the health report is plain JSON


def test_hold_policy_glitch_during_hold_does_not_lose_the_press(make_node):
    # A 1 ms release glitch while held (accepted as a release), the re-press inside the
    # bounce window (ignored as bounce): the button is held, so the alarm must come.
    node = make_node(alarm={"panic_policy": "hold", "hold_s": 0.3})
    node.press()
    time.sleep(0.1)  # on purpose: the scenario's timing (held, then a 1 ms glitch)
    node.release()
    time.sleep(0.001)  # on purpose: a 1 ms glitch
    node.press()
    wait_for(lambda: node.pin("siren").state, 1.5, "siren after a hold with a glitch")
    assert node.controller.alarm is not None and node.controller.counts["short_holds"] == 0
    button = node.panel.buttons[0]
    assert button.bounces >= 1


def test_button_level_rechecked_after_an_ignored_edge(make_node):
    # Leading-edge debounce must not leave the debounced state wrong: a release ignored
    # as bounce is delivered once the window is over if the pin is still up.
    node = make_node(alarm={"panic_policy": "hold", "hold_s": 5.0})
    node.press()
    time.sleep(0.001)  # on purpose: well inside the bounce window
    node.release()  # inside the 30 ms window: ignored for now
    wait_for(lambda: not node.controller.holding, 1.0, "the release after the window")
    assert node.pin("buzzer").state is False


def test_slow_node_health_does_not_stall_the_alarm_loop(make_node):
    # health() of the whole node takes the recorder's lock, SQLite, statvfs...: a hung
    # disk must not stop the loop that guards the siren (nor make the supervisor see a
    # stalled alarm and let systemd's watchdog kill the daemon mid-alarm).
    node = make_node(start=False)
    comp = node.components[0]
    release = threading.Event()
    comp.node_health = lambda: release.wait(5) and {"components": {"rec": {"error": "x"}}}
    comp.health_every_s = 0.0
    comp.health_timeout_s = 0.5
    node.start()
    try:
        # watch the loop for 3 s: blocked by the hung check (5 s), it would stall all along
        deadline = time.monotonic() + 3.0
        worst = 0.0
        while time.monotonic() < deadline:
            worst = max(worst, comp.stalled_for())
            time.sleep(0.02)  # on purpose: sampling over the window
        assert worst < 2.5, f"alarm loop stalled for {worst:.1f} s"
        assert comp.faults and "health" in comp.faults[0]  # a hung check is a fault
    finally:
        release.set()


def test_timeout_clear_and_a_new_press_do_not_interleave(make_node):
    # tick() decides "timed out" and clears under one lock: a press arriving meanwhile
    # waits and then sounds a new alarm, instead of being silenced by the timeout.
    node = make_node(alarm={"siren_max_s": 0.3, "light_max_s": 0.3})
    c = node.controller
    node.tap()
    first = wait_for(lambda: c.alarm).alarm_id
    real_ack = c.ack
    seen = {}

    def ack(source, **kw):
        if source == "timeout" and not seen:
            presser = threading.Thread(target=node.press)
            presser.start()
            presser.join(0.2)  # blocked on the controller's lock when fixed
            seen["press"] = presser
        return real_ack(source, **kw)

    c.ack = ack
    wait_for(lambda: seen, 3, "the timeout")
    seen["press"].join(2)
    node.release()
    assert node.panel.siren.active, "the press was silenced by the timeout"
    assert c.alarm is not None and c.alarm.alarm_id != first


def test_output_reports_keep_the_order_of_the_changes(make_node):
    # A remote `siren off` is preempted between switching the pin and reporting it; a
    # press sounds the siren meanwhile. The last OutputChanged (retained on MQTT) must
    # not say "off" while the siren sounds.
    node = make_node()
    siren = node.panel.siren
    orig = siren.on_change

    preempted = threading.Event()

    def slow(name, state, cause, until):
        if state == "off" and cause == "cmd:k1":
            preempted.set()
            time.sleep(0.3)  # on purpose: preempted between the pin and its report
        orig(name, state, cause, until)

    siren.on_change = slow
    siren.play("titir", [0.15, 0.15], cause="cmd:k0", duration_s=30)
    off = threading.Thread(target=siren.off, kwargs={"cause": "cmd:k1"})
    off.start()
    wait_for(preempted.is_set, 10, "the `off` to be preempted")
    node.tap()
    off.join()
    node.controller.drain()
    node.settle()
    last = [m for m in node.of(OutputChanged) if m.name == "siren"][-1]
    assert siren.active and last.state != "off", (last.state, last.cause)
    assert not node.of(AlarmEvent, phase="silenced")


def test_a_press_drives_every_pin_before_reporting(make_node):
    # Logging and OutputChanged come after siren *and* light are driven, outside the
    # controller's lock (a slow log handler must not hold the light back).
    node = make_node()
    siren, c = node.panel.siren, node.controller
    seen = []
    orig = siren.on_change

    def spy(name, state, cause, until):
        seen.append((node.pin("light").state, not c._lock._is_owned()))
        orig(name, state, cause, until)

    siren.on_change = spy
    node.tap()
    wait_for(lambda: seen)
    light_on, lock_free = seen[0]
    assert light_on, "siren reported before the light was switched on"
    assert lock_free, "siren reported under the controller's lock"


def test_stop_keeps_within_its_budget_and_switches_off_first(make_node):
    node = make_node()
    comp = node.components[0]
    node.tap()
    wait_for(lambda: node.pin("siren").state)
    node.controller.reports.submit(lambda: time.sleep(10))  # a worker stuck on a slow disk
    t0 = time.monotonic()
    comp.stop(timeout=1.0)
    took = time.monotonic() - t0
    assert node.pin("siren").state is False and node.pin("light").state is False
    assert took < 6, f"stop took {took:.1f} s: it waited for the stuck worker (10 s)"


def test_a_press_while_the_panel_is_built_sounds_the_siren(tmp_path, monkeypatch):
    # The buttons' callbacks are live from the moment each button exists: the controller
    # must already know the outputs then, or a press raises an alarm with no siren.
    from alarm_kit import PINS, Node

    from drivers.gpio import panel as panel_mod

    class PressedAtOnce(panel_mod.ButtonInput):
        def __init__(self, name, spec, factory, **kw):
            super().__init__(name, spec, factory, **kw)
            if spec.pin == PINS["panic"]:
                factory.pin(spec.pin).drive_low()

    monkeypatch.setattr(panel_mod, "ButtonInput", PressedAtOnce)
    node = Node(tmp_path / "s")
    try:
        assert node.controller.alarm is not None
        assert node.pin("siren").state is True, "alarm raised with no siren"
    finally:
        node.panel.close()
        node.controller.close()
