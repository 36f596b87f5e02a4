"""`ronda alarm-test`: try the panel by hand (buttons, siren rhythms, light, status LED)."""

from __future__ import annotations

import argparse
import sys
import threading
import time

from firmware.commands import formatter, load_config_or_exit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "alarm-test", formatter_class=formatter,
        help="try the panic buttons, siren rhythms, light and status LED by hand",
        description=(
            "Drive the watch post's panel with the node's config, without the daemon\n"
            "(stop it first: it holds the pins). Use it after wiring, to check that\n"
            "each button is seen once per press (no bounce) and that the siren plays the\n"
            "kentongan rhythm the neighbourhood knows.\n\n"
            "  --watch S     print every press and release for S seconds, with the bounce\n"
            "                count (raise [gpio] bounce_ms if a press counts twice)\n"
            "  --siren NAME  play the rhythm NAME (from [alarm] patterns) on the siren\n"
            "  --light MODE  steady or strobe, for --seconds\n\n"
            "The siren never plays longer than [alarm] siren_max_s, here as in the daemon.\n\n"
            "examples:\n"
            "  ronda alarm-test -c /etc/ronda/ronda.toml --watch 30\n"
            "  ronda alarm-test -c /etc/ronda/ronda.toml --siren fire --seconds 5\n"
            "  ronda alarm-test -c /etc/ronda/ronda.toml --light strobe --seconds 3"),
    )
    p.add_argument("--config", "-c", default="/etc/ronda/ronda.toml",
                   help="config file (default: /etc/ronda/ronda.toml)")
    p.add_argument("--watch", type=float, metavar="S", default=0.0,
                   help="print button presses for S seconds")
    p.add_argument("--siren", metavar="NAME", help="play this siren rhythm")
    p.add_argument("--light", choices=["steady", "strobe"], help="switch the light on")
    p.add_argument("--seconds", type=float, default=3.0,
                   help="how long --siren / --light last (default: 3)")
    p.set_defaults(func=alarm_test)

    p = sub.add_parser(
        "outputs-off", formatter_class=formatter,
        help="drive the siren, light, status LED and buzzer off (for ExecStopPost)",
        description=(
            "Claim every configured output pin, drive it to its off level and release it.\n"
            "A GPIO line released by a killed process keeps its last level on many boards,\n"
            "so the service runs this after the daemon exits for any reason, kill -9\n"
            "included. Exit 0 when every output was driven off.\n\n"
            "example (systemd unit):\n"
            "  ExecStopPost=-/usr/bin/ronda outputs-off -c /etc/ronda/ronda.toml"),
    )
    p.add_argument("--config", "-c", default="/etc/ronda/ronda.toml",
                   help="config file (default: /etc/ronda/ronda.toml)")
    p.set_defaults(func=outputs_off)


def outputs_off(args: argparse.Namespace) -> int:
    from gpiozero import DigitalOutputDevice
    from gpiozero.exc import GPIOZeroError

    from drivers.gpio.factory import PinFactoryError, make_pin_factory
    from firmware import config

    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:  # the pins safe mode drove: see firmware/fallback.py
        from firmware.fallback import DEFAULT_DATA_DIR, boot_rejection, safe_config

        cfg, why = safe_config(args.config, exc, boot_rejection(DEFAULT_DATA_DIR))  # as `run`
        where, gpio = _safe_mode_pins(why.gpio_candidates)
        print(f"{why.reason}: using the safe-mode pins ({where})", file=sys.stderr)
    else:
        gpio = cfg.gpio
    try:
        factory = make_pin_factory(gpio.pin_factory, gpio.jetson_numbering)
    except PinFactoryError as exc:
        print(f"cannot open GPIO: {exc}", file=sys.stderr)
        return 1
    failed = 0
    for name in ("siren", "light", "status_led", "buzzer"):
        spec = getattr(gpio, name)
        if spec is None:
            continue
        try:  # one output failing (pin busy) must not keep the others on
            DigitalOutputDevice(spec.pin, active_high=spec.active_high, initial_value=False,
                                pin_factory=factory).close()
            print(f"{name} (pin {spec.pin}) off")
        except (GPIOZeroError, OSError, ValueError, RuntimeError) as exc:
            failed += 1
            print(f"{name} (pin {spec.pin}): {exc}", file=sys.stderr)
    factory.close()
    return 1 if failed else 0


def _safe_mode_pins(candidates: list) -> tuple:
    """(where, [gpio]) safe mode ran with: the first candidate whose panel can be claimed,
    as the daemon chose it (firmware/wiring/alarm.py)."""
    from drivers.gpio.factory import make_pin_factory
    from drivers.gpio.panel import Panel
    from firmware.fallback import open_first_gpio

    def claim(gpio) -> bool:
        factory = make_pin_factory(gpio.pin_factory, gpio.jetson_numbering)
        try:
            Panel(gpio, factory).close()  # closing drives every output off
        finally:
            factory.close()
        return True

    where, gpio, _, _ = open_first_gpio(candidates, claim)
    return where, gpio


def alarm_test(args: argparse.Namespace) -> int:
    from gpiozero.exc import GPIOZeroError

    from drivers.gpio.factory import PinFactoryError, make_pin_factory
    from drivers.gpio.panel import ButtonInput, Panel

    cfg = load_config_or_exit(args.config)
    alarm = cfg.alarm
    if args.siren and args.siren not in alarm.patterns:
        print(f"no rhythm {args.siren!r}; known: {', '.join(sorted(alarm.patterns))}",
              file=sys.stderr)
        return 2
    lock = threading.Lock()

    def say(text: str) -> None:
        with lock:
            print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def pressed(button: ButtonInput) -> None:
        say(f"{button.name} pressed (presses {button.presses}, bounces {button.bounces})")

    def released(button: ButtonInput) -> None:
        say(f"{button.name} released")

    try:
        panel = Panel(cfg.gpio, make_pin_factory(cfg.gpio.pin_factory, cfg.gpio.jetson_numbering),
                      on_press=pressed, on_release=released, on_ack=pressed,
                      on_change=lambda name, state, cause, until: say(f"{name} -> {state}"),
                      siren_max_s=alarm.siren_max_s, light_max_s=alarm.light_max_s)
    except (PinFactoryError, GPIOZeroError, OSError, ValueError, RuntimeError) as exc:
        print(f"cannot open the GPIO panel: {exc}", file=sys.stderr)
        return 1
    try:
        names = [b.name for b in panel.buttons] + (["ack"] if panel.ack else [])
        say(f"panel ready: buttons {', '.join(names) or 'none'}; outputs "
            f"{', '.join(panel.outputs()) or 'none'}")
        if args.siren:
            if panel.siren is None:
                print("no siren configured ([gpio] siren)", file=sys.stderr)
                return 1
            panel.siren.play(args.siren, alarm.patterns[args.siren], cause="alarm-test",
                             duration_s=args.seconds)
        if args.light:
            if panel.light is None:
                print("no light configured ([gpio] light)", file=sys.stderr)
                return 1
            steps = alarm.strobe if args.light == "strobe" else []
            panel.light.play(args.light, steps, cause="alarm-test", duration_s=args.seconds)
        deadline = time.monotonic() + max(args.watch, args.seconds if (args.siren or args.light)
                                          else 0.0)
        if args.watch:
            say(f"watching the buttons for {args.watch:g} s (Ctrl-C to stop)")
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        panel.all_off("alarm-test done")
        panel.close()
    return 0
