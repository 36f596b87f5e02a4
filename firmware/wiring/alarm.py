"""Wiring of the alarm area: GPIO panel, alarm controller, remote commands, arming.

Offers ``ctx.shared.armed`` (``armed(now=None) -> bool``) to the detection area and
``ctx.shared.alarm`` (the `AlarmController`, e.g. to raise an alarm from a CLI).
Subscribes to `Command` for the actions siren, light, ack and arm.

A node without usable GPIO (wrong pin factory, a pin taken) still runs: the error is
logged, shown in health (`gpio_error`) and the alarm works without outputs.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import zoneinfo

from drivers.gpio.factory import make_pin_factory, real_board
from drivers.gpio.panel import Panel
from drivers.gpio.settings import GpioSettings
from firmware.alarm.arming import ArmState
from firmware.alarm.component import AlarmComponent
from firmware.alarm.controller import AlarmController
from firmware.alarm.remote import RemoteControl
from firmware.alarm.status import StatusIndicator
from firmware.alarm.store import JsonFile
from firmware.component import Component
from firmware.events import Command
from firmware.fallback import open_first_gpio
from firmware.wiring import Context

log = logging.getLogger(__name__)

ALARM_FILE = "alarm.json"
ARM_FILE = "arm.json"


def _arm_state(ctx: Context, arm_file: JsonFile) -> ArmState:
    settings = ctx.config.alarm
    zone = zoneinfo.ZoneInfo(settings.timezone) if settings.timezone else None
    arm = ArmState(settings.arm_mode, settings.schedule, zone)
    saved = arm_file.load()
    if saved:  # a remote `arm` command outlives restarts until the next one
        try:
            arm.set(saved["mode"], saved.get("schedule"))
        except (KeyError, ValueError, TypeError) as exc:
            log.warning("ignoring %s: %s", arm_file.path, exc)
    return arm


def _signal_buttons(panel: Panel) -> None:
    """Mock pins only: SIGUSR1 presses the first panic button, SIGUSR2 the ack key.

    Simulated pins live inside the daemon, so this is how a demo or a test outside the
    process presses them (``kill -USR1 <pid>``). Python runs the handler in the main
    thread, between two ticks of the supervisor, as a GPIO library would call back.
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def tap(button) -> None:
        pin = panel.factory.pin(button.spec.pin)
        active_low = button.device.pull_up if button.spec.pull_up != "external" \
            else not button.spec.active_high
        press, release = (pin.drive_low, pin.drive_high) if active_low \
            else (pin.drive_high, pin.drive_low)
        press()
        time.sleep(button.bounce_s + 0.01)
        release()

    def press_first(*_: object) -> None:
        if panel.buttons:  # empty once the panel is closed
            tap(panel.buttons[0])

    def press_ack(*_: object) -> None:
        if panel.ack is not None:
            tap(panel.ack)

    signal.signal(signal.SIGUSR1, press_first)
    signal.signal(signal.SIGUSR2, press_ack)


def build(ctx: Context) -> list[Component]:
    settings = ctx.config.alarm
    gpio = ctx.config.gpio
    arm_file = JsonFile(ctx.state_dir / ARM_FILE)
    arm = _arm_state(ctx, arm_file)
    ctx.shared.armed = arm.armed

    controller = AlarmController(
        settings, ctx.bus.publish, JsonFile(ctx.state_dir / ALARM_FILE),
        cameras=lambda: [c.name for c in ctx.config.cameras if c.enabled],
        snapshot=lambda: ctx.shared.snapshot)  # None: no camera area

    def open_panel(gpio: GpioSettings) -> Panel | None:
        if not gpio.enabled:
            return None
        factory = make_pin_factory(gpio.pin_factory, gpio.jetson_numbering)
        try:
            return Panel(gpio, factory, on_press=controller.on_press,
                         on_release=controller.on_release, on_ack=controller.on_ack_key,
                         on_change=controller.output_changed,
                         siren_max_s=settings.siren_max_s, light_max_s=settings.light_max_s,
                         on_outputs=controller.attach)  # before the buttons exist
        except Exception:
            with contextlib.suppress(Exception):
                factory.close()
            raise

    # Safe mode offers every valid [gpio] it found (ctx.shared["gpio_candidates"]): one
    # that cannot be claimed must not cost the panic button while another can.
    candidates = ctx.shared.get("gpio_candidates") or [("the config", gpio)]
    where, gpio, panel, gpio_error = open_first_gpio(candidates, open_panel)
    if panel is None and gpio_error:  # PinFactoryError, a pin in use...: run on without GPIO
        log.error("GPIO unavailable, the panel is disabled: %s", gpio_error)
    elif gpio_error:
        log.error("%s; the panel runs on the pins of %s", gpio_error, where)
        gpio_error = ""
    ctx.shared["gpio_source"] = where
    board = real_board()
    if gpio.enabled and gpio.pin_factory == "mock" and board:
        gpio_error = (f'pin_factory = "mock" on a real {board}: the panic button is not '
                      'wired; set [gpio] pin_factory = "auto"')
        log.error("%s", gpio_error)
    ctx.shared["gpio_error"] = gpio_error
    if panel is not None and type(panel.factory).__name__ == "MockFactory":
        _signal_buttons(panel)  # also "auto" resolved to mock by GPIOZERO_PIN_FACTORY
    status = StatusIndicator(panel.status_led if panel else None)
    status.show("booting")
    controller.attach(panel, status)
    ctx.shared.alarm = controller

    def save_arm() -> None:
        try:
            arm_file.save({"mode": arm.mode, "schedule": arm.schedule})
        except OSError as exc:
            log.error("cannot save the arm mode: %s", exc)

    remote = RemoteControl(controller, arm, ctx.bus.publish, on_arm_change=save_arm)
    ctx.bus.subscribe(Command, remote.handle, name="alarm-commands")
    return [AlarmComponent(controller, panel, status, arm, ctx.bus.publish,
                           shared=ctx.shared, node_health=ctx.health, gpio_error=gpio_error)]
