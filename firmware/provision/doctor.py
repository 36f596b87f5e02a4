"""`ronda doctor`: is this node ready to do its job? One check per thing a technician
can fix on site, each with a hint.

The checks use plain tools (ffprobe, os.statvfs, tflite_runtime, gpiozero, paho-mqtt)
rather than the daemon's components, so a doctor run tells the truth even while the
daemon is down or broken. Outputs (siren, light) are only switched with `test_outputs`.

Exit codes: 0 every check passed (warnings allowed), 1 some check failed,
78 (EX_CONFIG) the config file is invalid (nothing else is checked).
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from drivers import platform
from firmware import config as config_mod
from firmware.provision.check import FAIL, OK, SKIP, WARN, Check, guard
from firmware.provision.devices import check_camera, check_gpio, check_model, check_storage

EX_FAILED = 1
__all__ = ["ALL_CHECKS", "FAIL", "OK", "SKIP", "WARN", "Check", "as_json", "check_camera",
           "check_clock", "check_config", "check_gpio", "check_model", "check_mqtt",
           "check_power", "check_service", "check_storage", "exit_code", "run_checks"]


# ---- config ----------------------------------------------------------------------------


def check_config(path: Path, boot: Path | None = None,
                 state_dir: Path = Path("/var/lib/ronda")
                 ) -> tuple[Check, config_mod.Config | None]:
    """Load and validate the config; the other checks need it. A missing installed config
    after first boot refused the boot file is blamed on the boot file, not on `path`."""
    try:
        cfg = config_mod.load(path)
    except config_mod.ConfigError as exc:
        from firmware.fallback import boot_rejection

        refused = boot_rejection(state_dir)
        safe = ("; the node runs only the alarm, in safe mode (panic button, siren, "
                "light, status LED)")
        if refused is not None and not Path(path).exists():
            return Check("config", FAIL, f"{path} not installed: first boot refused "
                         f"{refused.source}: {'; '.join(refused.problems)}{safe}",
                         f"fix those fields in {refused.source} (ronda-error.txt next to it "
                         "says the same), then reboot"), None
        return Check("config", FAIL, "; ".join(map(str, exc.problems)) + safe,
                     f"fix the fields named, then `ronda check-config {path}` and "
                     "`sudo systemctl restart ronda`"
                     + (f" (or edit {boot / 'ronda.toml'} and reboot)" if boot else "")), None
    cams = [c.name for c in cfg.cameras if c.enabled]
    return Check("config", OK, f"node {cfg.node.id}, {len(cams)} camera(s)"), cfg


# ---- first boot: the technician's boot-partition file ------------------------------------


def check_firstboot(boot: Path, state_file: Path = Path("/var/lib/ronda/firstboot.json"),
                    manager: Any = None, booted: bool | None = None) -> Check | None:
    """Was BOOT/ronda.toml applied? Reads ronda-error.txt, firstboot.json and the unit's
    state; says when the boot file was edited after the running config was installed.
    None when there is no boot partition here (nothing to say)."""
    import hashlib
    import json

    if not boot.is_dir():
        return None
    src, error = boot / "ronda.toml", boot / "ronda-error.txt"
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_file.read_text())
    if error.is_file():
        lines = [ln.strip() for ln in error.read_text(errors="replace").splitlines()[3:]
                 if ln.strip()]
        return Check("firstboot", FAIL, f"{src} was NOT applied: {'; '.join(lines)}",
                     f"fix those fields in {src} (on a laptop: the bootfs drive), then "
                     "reboot; until then the node runs its previous settings or safe mode",
                     {"problems": lines})
    if booted is None:
        booted = Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None
    if booted:
        from firmware.provision.services import SystemdManager

        st = (manager or SystemdManager()).state("ronda-firstboot")
        if st.active == "failed":
            return Check("firstboot", FAIL, "ronda-firstboot.service failed",
                         "read `journalctl -u ronda-firstboot -b`, fix what it says, reboot")
    if not src.is_file():
        return Check("firstboot", OK, f"no {src}: nothing to apply")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    if state.get("sha256") and state["sha256"] != digest:
        return Check("firstboot", WARN, f"{src} was edited after the running config was "
                     f"installed ({state.get('applied_at', '?')}): the node still runs the "
                     "older settings", "reboot to apply it (or `sudo ronda firstboot`)")
    return Check("firstboot", OK, f"{src} applied {state.get('applied_at', '')}".strip())


def check_daemon(health_file: Path, config_path: Path) -> Check | None:
    """What the running daemon says of itself (its health file): safe mode, or settings
    older than the installed file. None when no daemon writes one here."""
    import json

    try:
        health = json.loads(health_file.read_text())
    except (OSError, ValueError):
        return None
    rejected = health.get("config_rejected") or {}
    if rejected:
        return Check("daemon", FAIL, f"SAFE MODE: {rejected.get('reason')} "
                     f"({rejected.get('file')}); only the alarm runs",
                     f"fix {rejected.get('file')} as the config check says", {"health": True})
    started = float(health.get("ts", 0)) - float(health.get("uptime_s", 0))
    with contextlib.suppress(OSError):
        if Path(config_path).stat().st_mtime > started > 0:
            return Check("daemon", WARN, f"ronda runs settings older than {config_path} "
                         "(edited after the daemon started)",
                         "apply them: sudo systemctl restart ronda")
    return Check("daemon", OK, f"ronda {health.get('version')} up {health.get('uptime_s')} s")


# ---- MQTT ------------------------------------------------------------------------------


def check_mqtt(cfg: config_mod.Config, timeout_s: float = 8.0) -> Check:
    """Connect to the first broker with the node's TLS and credentials; publish a message
    to a private topic and wait for it to come back."""
    m = cfg.mqtt
    if not m.enabled:
        return Check("mqtt", SKIP, "MQTT disabled ([mqtt] enabled = false)")
    import paho.mqtt.client as mqtt

    url = urlsplit(m.brokers[0])
    tls = url.scheme in ("mqtts", "ssl")
    host, port = url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"{cfg.node.id}-doctor-{uuid.uuid4().hex[:6]}",
                         protocol=mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311)
    if m.username:
        client.username_pw_set(m.username, config_mod.read_secret(m.password_file))
    if tls:  # the daemon's own TLS context: system CAs unless ca_file, hostname checked
        from mqtt.link import tls_context

        client.tls_set_context(tls_context(m.ca_file, m.cert_file, m.key_file))
    client.connect_timeout = timeout_s
    topic = f"{m.prefix}/{cfg.node.id}/doctor/{uuid.uuid4().hex[:8]}"
    connected, echoed = threading.Event(), threading.Event()
    reason: list[str] = []

    def on_connect(c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            reason.append(str(rc))
        else:
            c.subscribe(topic, qos=1)
        connected.set()

    def on_subscribe(c: Any, *_a: Any) -> None:
        c.publish(topic, b"ping", qos=1)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = lambda *_a: echoed.set()
    start = time.monotonic()
    where = f"{url.scheme}://{host}:{port}"
    try:
        client.connect(host, port, keepalive=10)
    except (OSError, ValueError) as exc:
        return Check("mqtt", FAIL, f"{where}: {exc}", _mqtt_hint(str(exc), tls))
    client.loop_start()
    try:
        if not connected.wait(timeout_s) or reason:
            why = reason[0] if reason else f"no CONNACK in {timeout_s:.0f} s"
            return Check("mqtt", FAIL, f"{where}: {why}", _mqtt_hint(why, tls))
        if not echoed.wait(max(0.5, timeout_s - (time.monotonic() - start))):
            return Check("mqtt", FAIL, f"{where}: connected, but a message to {topic} did not "
                         "come back", "the broker's ACL must let this node publish and "
                         f"subscribe under {m.prefix}/{cfg.node.id}/#")
    finally:
        client.disconnect()
        client.loop_stop()
    ms = (time.monotonic() - start) * 1000
    return Check("mqtt", OK, f"{where}: {'TLS, ' if tls else ''}"
                 f"{'user ' + m.username + ', ' if m.username else ''}round trip {ms:.0f} ms",
                 data={"broker": where, "tls": tls, "round_trip_ms": round(ms, 1)})


def _mqtt_hint(why: str, tls: bool) -> str:
    low = why.lower()
    if "refused" in low and "connection" in low:
        return "nothing listens there: check mqtt.brokers (host and port) and the network"
    if "not authorized" in low or "bad user" in low:
        return "the broker refused the login: check mqtt.username and the password file"
    if "certificate" in low or "ssl" in low:
        return ("TLS failed: check mqtt.ca_file, and the clock (a wrong date makes every "
                "certificate invalid)")
    if "name or service" in low or "resolution" in low:
        return "the broker's name does not resolve: check DNS / the network"
    return "check the network path to the broker" + (" and its TLS port" if tls else "")


# ---- the daemon itself ---------------------------------------------------------------------


def check_service(unit: str = "ronda", manager: Any = None, booted: bool | None = None
                  ) -> Check:
    """What systemd says about ronda.service: running, restarting, failed."""
    from firmware.provision.services import SystemdManager

    if booted is None:
        booted = Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None
    if not booted:
        return Check("service", SKIP, "systemd is not running here")
    st = (manager or SystemdManager()).state(unit)
    data = {"active": st.active, "pid": st.main_pid, "restarts": st.restarts,
            "status": st.status}
    logs = f"journalctl -u {unit} -b -n 80"
    if st.active == "failed":
        return Check("service", FAIL, f"{unit} failed ({st.status or 'see the journal'})",
                     f"read `{logs}`, fix what it says, then `systemctl restart {unit}`", data)
    if st.active != "active":
        return Check("service", WARN, f"{unit} is {st.active}",
                     f"start it when done: systemctl start {unit}", data)
    detail = f"{unit} active, PID {st.main_pid}" + (f": {st.status}" if st.status else "")
    if st.restarts:
        return Check("service", WARN, f"{detail}; restarted {st.restarts} time(s) since boot",
                     f"something crashes or stalls: `{logs}`", data)
    return Check("service", OK, detail, data=data)


# ---- platform --------------------------------------------------------------------------


def check_clock() -> Check:
    synced = platform.clock_synced()
    if synced is None:
        return Check("clock", WARN, "unknown: the kernel did not say whether the clock is "
                     "synchronised", "check `timedatectl status` (System clock synchronized: "
                     "yes); evidence timestamps depend on it")
    if not synced:
        return Check("clock", FAIL, "not synchronised (NTP)",
                     "the node needs NTP: `timedatectl status` must say System clock "
                     "synchronized: yes; check that UDP 123 reaches a time server (the "
                     "image's systemd-timesyncd); evidence timestamps depend on it")
    return Check("clock", OK, time.strftime("synchronised, %Y-%m-%d %H:%M:%S UTC",
                                            time.gmtime()))


def check_power() -> Check:
    flags = platform.throttled()
    if flags is None:
        return Check("power", SKIP, "no vcgencmd (not a Raspberry Pi)")
    now = [f for f in flags if not f.endswith("_since_boot")]
    hint = ("use the official supply (5 V 5 A for a Pi 5, 5 V 3 A for a Pi 4) with a short "
            "thick cable, and a UPS against brown-outs; check the cooling")
    if now:
        return Check("power", FAIL, "now: " + ", ".join(now), hint, {"flags": flags})
    if flags:
        return Check("power", WARN, "since boot: " + ", ".join(flags), hint, {"flags": flags})
    return Check("power", OK, "no under-voltage or throttling", data={"flags": []})


# ---- all -------------------------------------------------------------------------------

ALL_CHECKS = ("config", "service", "cameras", "storage", "model", "gpio", "mqtt", "clock",
              "power")


def run_checks(config_path: Path, *, test_outputs: bool = False,
               skip: Iterable[str] = (), camera_timeout_s: float = 10.0,
               mqtt_timeout_s: float = 8.0, boot: Path = Path("/boot/firmware"),
               health_file: Path = Path("/run/ronda/health.json"),
               state_dir: Path = Path("/var/lib/ronda")) -> list[Check]:
    """Every check, in the order a technician would fix things. `firstboot` and `daemon`
    appear only where there is a boot partition / a running daemon's health file."""
    skip = set(skip)
    first, cfg = check_config(Path(config_path), boot if boot.is_dir() else None, state_dir)
    checks = [first]
    extra = [guard("firstboot", lambda: check_firstboot(boot, state_dir / "firstboot.json")
                   or Check("firstboot", SKIP)),
             guard("daemon", lambda: check_daemon(health_file, Path(config_path))
                   or Check("daemon", SKIP))]
    checks += [c for c in extra if c.status != SKIP or c.detail]
    if cfg is None:
        return checks
    if "service" not in skip:
        checks.append(guard("service", check_service))
    if "cameras" not in skip:
        cams = [c for c in cfg.cameras if c.enabled]
        checks += [guard(f"camera:{c.name}", lambda c=c: check_camera(c, camera_timeout_s))
                   for c in cams]
        if not cams:
            checks.append(Check("cameras", WARN, "no camera enabled", "add [[cameras]] tables"))
    plan: list[tuple[str, Callable[[], Check]]] = [
        ("storage", lambda: check_storage(cfg)),
        ("model", lambda: check_model(cfg)),
        ("gpio", lambda: check_gpio(cfg, test_outputs)),
        ("mqtt", lambda: check_mqtt(cfg, mqtt_timeout_s)),
        ("clock", check_clock),
        ("power", check_power),
    ]
    checks += [guard(name, func) for name, func in plan if name not in skip]
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 all passed, 78 config invalid, 1 anything else failed."""
    if checks and checks[0].name == "config" and checks[0].failed:
        return config_mod.EX_CONFIG
    return EX_FAILED if any(c.failed for c in checks) else 0


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": not any(c.failed for c in checks), "exit_code": exit_code(checks),
            "checks": [asdict(c) for c in checks]}
