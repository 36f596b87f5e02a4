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
import json
import os
import shutil
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from drivers import platform
from firmware import config as config_mod

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
EX_FAILED = 1


@dataclass
class Check:
    """The outcome of one check."""

    name: str
    status: str  # ok | warn | fail | skip
    detail: str = ""
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def _guard(name: str, func: Callable[[], Check]) -> Check:
    """Run one check; an unexpected exception is a failure of that check, not of doctor."""
    try:
        return func()
    except Exception as exc:  # doctor reports, it does not crash
        return Check(name, FAIL, f"{type(exc).__name__}: {exc}", "report this as a bug")


# ---- config ----------------------------------------------------------------------------


def check_config(path: Path) -> tuple[Check, config_mod.Config | None]:
    try:
        cfg = config_mod.load(path)
    except config_mod.ConfigError as exc:
        return Check("config", FAIL, "; ".join(map(str, exc.problems)),
                     f"fix the fields named, then `ronda check-config {path}`"), None
    cams = [c.name for c in cfg.cameras if c.enabled]
    return Check("config", OK, f"node {cfg.node.id}, {len(cams)} camera(s)"), cfg


# ---- cameras ---------------------------------------------------------------------------


def _with_password(url: str, username: str | None, password: str | None) -> str:
    if not username or "@" in urlsplit(url).netloc:
        return url
    parts = urlsplit(url)
    auth = quote(username, safe="") + (f":{quote(password, safe='')}" if password else "")
    return urlunsplit(parts._replace(netloc=f"{auth}@{parts.netloc}"))


def _probe(args: list[str], target: str, timeout_s: float) -> tuple[dict[str, Any], str]:
    """ffprobe `target` (a URL or device, last of `args`): (stream figures, error)."""
    try:
        proc = subprocess.run([*args, target], capture_output=True, text=True,
                              timeout=timeout_s + 5)
    except subprocess.TimeoutExpired:
        return {}, f"no answer in {timeout_s:.0f} s"
    streams = json.loads(proc.stdout or "{}").get("streams", []) if proc.returncode == 0 else []
    if not streams:
        err = (proc.stderr.strip().splitlines() or ["no video stream"])[-1]
        return {}, err.split(": ", 1)[1] if err.startswith(target + ":") else err
    s = streams[0]
    fps = _rate(s.get("avg_frame_rate")) or _rate(s.get("r_frame_rate"))
    return {"codec": s.get("codec_name"), "width": s.get("width"), "height": s.get("height"),
            "fps": round(fps, 2) if fps else None}, ""


def check_camera(cam: Any, timeout_s: float = 10.0) -> Check:
    """ffprobe the camera's main stream (and its substream, which detection reads):
    codec, resolution, frame rate."""
    name = f"camera:{cam.name}"
    if cam.kind in ("picamera", "jetson"):
        return Check(name, SKIP, f"{cam.kind} sensor {cam.sensor}: not probed by ffprobe",
                     data={"kind": cam.kind})
    args = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
            "stream=codec_name,width,height,avg_frame_rate,r_frame_rate", "-of", "json"]
    if cam.kind == "usb":
        data, err = _probe([*args, "-f", "v4l2"], cam.device, timeout_s)
        shown = cam.device
        sub_data, sub_err = {}, ""
    else:
        password = config_mod.read_secret(cam.password_file) if cam.password_file else None
        if cam.url.startswith("rtsp"):
            args += ["-rtsp_transport", cam.transport, "-timeout", str(int(timeout_s * 1e6))]
        else:
            args += ["-rw_timeout", str(int(timeout_s * 1e6))]
        data, err = _probe(args, _with_password(cam.url, cam.username, password), timeout_s)
        shown = _mask(cam.url)
        sub_data, sub_err = {}, ""
        if cam.substream_url and not err:
            sub_data, sub_err = _probe(
                args, _with_password(cam.substream_url, cam.username, password), timeout_s)
    if err:
        hint = _camera_hint(err)
        if "no answer" in err:
            hint = "check the camera's power and cable, and its IP address (ping it)"
        return Check(name, FAIL, f"{shown}: {_mask(err)}", hint)
    detail = f"{data['codec']} {data['width']}x{data['height']} @ {data['fps']} fps"
    if sub_data:
        data["substream"] = sub_data
        detail += (f"; substream {sub_data['codec']} {sub_data['width']}x"
                   f"{sub_data['height']} @ {sub_data['fps']} fps")
    if sub_err:
        return Check(name, FAIL, f"{detail}; substream {_mask(cam.substream_url)}: "
                     f"{_mask(sub_err)}", "detection reads the substream: "
                     + _camera_hint(sub_err).replace("cameras[].url", "cameras[].substream_url"),
                     data)
    if data["codec"] not in ("h264", "hevc") and cam.kind != "usb":
        return Check(name, WARN, detail, "set the camera's main stream to H.264 or H.265 "
                     "in its web page: the recorder stores it without re-encoding", data)
    return Check(name, OK, detail, data=data)


def _camera_hint(err: str) -> str:
    low = err.lower()
    if "401" in low or "unauthorized" in low:
        return "wrong camera username or password (cameras[].username / password_file)"
    if "404" in low or "not found" in low:
        return "wrong stream path in cameras[].url: see the camera's manual for its RTSP path"
    if "refused" in low:
        return ("that address answers but nothing listens on the port: check the port in "
                "cameras[].url (RTSP is usually 554), or the camera is still booting")
    return "check the camera's power, cable and IP address (ping it), then its RTSP URL"


def _rate(text: str | None) -> float | None:
    try:
        num, den = (text or "0/0").split("/")
        return int(num) / int(den) if int(den) else None
    except ValueError:
        return None


def _mask(text: str) -> str:
    from drivers.cameras.base import mask_credentials

    return mask_credentials(text)


# ---- storage ---------------------------------------------------------------------------


def mount_of(path: Path) -> dict[str, str]:
    """The /proc/self/mountinfo entry whose mount point holds `path`."""
    best: dict[str, str] = {}
    real = os.path.realpath(path)
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, tail = left.split(), right.split()
            point = fields[4].replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best.get("point", "")):
                best = {"point": point, "options": fields[5] + "," + (tail[2] if len(tail) > 2
                                                                       else ""),
                        "fstype": tail[0], "source": tail[1] if len(tail) > 1 else ""}
    return best


def check_storage(cfg: config_mod.Config) -> Check:
    """Recordings directory: on its own disk, writable, enough free space, sane options."""
    rec = cfg.recorder
    path = Path(rec.path)
    if not path.is_dir():
        return Check("storage", FAIL, f"{path} does not exist",
                     "plug in the SSD and check `lsblk`; the fstab line is written by firstboot "
                     "(LABEL=RONDA-REC); then `mkdir -p` it and chown ronda")
    mount = mount_of(path)
    options = set(mount.get("options", "").split(","))
    data = {"path": str(path), "mount_point": mount.get("point"), "fstype": mount.get("fstype"),
            "source": mount.get("source"), "options": sorted(o for o in options if o)}
    probe = path / f".ronda-doctor-{uuid.uuid4().hex[:8]}"
    try:
        with open(probe, "wb") as fh:
            fh.write(os.urandom(64 * 1024))
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        hint = ("the filesystem is read-only: the SSD may have errors; run `fsck` on it or "
                "replace it" if "ro" in options or exc.errno == 30 else
                "make the directory writable by the ronda user: chown -R ronda: " + str(path))
        return Check("storage", FAIL, f"{path} not writable: {exc.strerror}", hint, data)
    st = os.statvfs(path)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    data.update(free_bytes=free, total_bytes=total)
    detail = (f"{path} on {mount.get('source', '?')} ({mount.get('fstype', '?')}), "
              f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
    if free < int(rec.min_free):
        return Check("storage", FAIL, detail, f"less than recorder.min_free "
                     f"({int(rec.min_free) / 2**20:.0f} MiB) free: is the SSD the right one?",
                     data)
    root_dev = os.stat("/").st_dev
    if os.stat(path).st_dev == root_dev:
        return Check("storage", WARN, detail + " (on the root filesystem)",
                     "recordings go to the SD card, which wears out: mount the SSD at "
                     f"{path.parent} (firstboot writes the fstab line)", data)
    if "noatime" not in options and mount.get("fstype") in ("ext4", "f2fs", "xfs"):
        return Check("storage", WARN, detail + " (mounted without noatime)",
                     "add noatime to its fstab options to save flash writes", data)
    return Check("storage", OK, detail, data=data)


# ---- model -----------------------------------------------------------------------------


def check_model(cfg: config_mod.Config) -> Check:
    """Load the configured .tflite model and run one inference on zeros."""
    det = cfg.detect
    if not det.enabled:
        return Check("model", SKIP, "detection disabled ([detect] enabled = false)")
    if det.model is None or not Path(det.model).is_file():
        return Check("model", FAIL, f"model file missing: {det.model}",
                     "set detect.model to the .tflite file (image: /usr/share/ronda/models/)")
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        return Check("model", FAIL, "tflite_runtime is not installed",
                     "pip install tflite-runtime==2.14.0 into /opt/ronda/current")
    import numpy as np

    try:
        interp = Interpreter(model_path=str(det.model), num_threads=det.num_threads)
        interp.allocate_tensors()
        inp = interp.get_input_details()[0]
        interp.set_tensor(inp["index"], np.zeros(inp["shape"], dtype=inp["dtype"]))
        start = time.perf_counter()
        interp.invoke()
        ms = (time.perf_counter() - start) * 1000
    except (ValueError, RuntimeError) as exc:
        return Check("model", FAIL, f"{det.model}: {exc}",
                     "the file is not a TensorFlow Lite model (or is damaged): fetch it again")
    shape = "x".join(str(int(d)) for d in inp["shape"])
    return Check("model", OK, f"{Path(det.model).name}: input {shape}, one inference "
                 f"{ms:.0f} ms", data={"inference_ms": round(ms, 1), "input": shape})


# ---- GPIO ------------------------------------------------------------------------------


def _pin_factory(name: str) -> Any:
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "auto":
        return None
    module, cls = {"lgpio": ("gpiozero.pins.lgpio", "LGPIOFactory"),
                   "rpigpio": ("gpiozero.pins.rpigpio", "RPiGPIOFactory"),
                   "pigpio": ("gpiozero.pins.pigpio", "PiGPIOFactory"),
                   "native": ("gpiozero.pins.native", "NativeFactory")}.get(name, ("", ""))
    if not module:
        raise ValueError(f"pin factory {name!r} is not handled by doctor")
    import importlib

    return getattr(importlib.import_module(module), cls)()


def check_gpio(cfg: config_mod.Config, test_outputs: bool = False,
               pulse_s: float = 0.5, factory: Any = None) -> Check:
    """Claim every configured pin; with `test_outputs`, pulse the siren and the light."""
    gpio = cfg.gpio
    if not gpio.enabled:
        return Check("gpio", SKIP, "GPIO disabled ([gpio] enabled = false)")
    from gpiozero import Button, Device, DigitalOutputDevice
    from gpiozero.exc import GPIOZeroError

    devices: list[Any] = []
    claimed: list[str] = []
    pulsed: list[str] = []
    try:
        factory = factory or _pin_factory(gpio.pin_factory)
        if factory is None:
            factory = Device._default_pin_factory()
        for i, pin in enumerate(gpio.panic):
            devices.append(Button(pin.pin, pull_up=pin.pull_up, pin_factory=factory))
            claimed.append(f"panic[{i}]={pin.pin}")
        if gpio.ack:
            devices.append(Button(gpio.ack.pin, pull_up=gpio.ack.pull_up, pin_factory=factory))
            claimed.append(f"ack={gpio.ack.pin}")
        outputs = {}
        for role in ("siren", "light", "status_led", "buzzer"):
            out = getattr(gpio, role)
            if out is not None:
                dev = DigitalOutputDevice(out.pin, active_high=out.active_high,
                                          initial_value=False, pin_factory=factory)
                devices.append(dev)
                outputs[role] = dev
                claimed.append(f"{role}={out.pin}")
        if test_outputs:
            for role in ("siren", "light"):
                if role in outputs:
                    outputs[role].on()
                    time.sleep(pulse_s)
                    outputs[role].off()
                    pulsed.append(role)
    except (GPIOZeroError, OSError, ValueError, RuntimeError) as exc:
        return Check("gpio", FAIL, f"{type(exc).__name__}: {exc} (claimed: "
                     f"{', '.join(claimed) or 'none'})",
                     "stop the daemon first (systemctl stop ronda), check gpio.pin_factory and "
                     "the pin numbers (BCM), and that the user is in the gpio group",
                     {"claimed": claimed})
    finally:
        for dev in devices:
            with contextlib.suppress(Exception):
                dev.close()
    if not claimed:
        return Check("gpio", WARN, "no pins configured",
                     "wire the panic button and siren, then set [gpio] panic/siren pins")
    detail = "claimed " + ", ".join(claimed)
    if pulsed:
        detail += f"; pulsed {' and '.join(pulsed)} {pulse_s:g} s"
    return Check("gpio", OK, detail, data={"claimed": claimed, "pulsed": pulsed})


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
    if tls:  # as the daemon's link does: system CAs unless ca_file, hostname checked
        context = ssl.create_default_context(cafile=str(m.ca_file) if m.ca_file else None)
        if m.cert_file:
            context.load_cert_chain(str(m.cert_file), str(m.key_file) if m.key_file else None)
        client.tls_set_context(context)
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
        return Check("clock", SKIP, "cannot tell (no adjtimex)")
    if not synced:
        return Check("clock", FAIL, "not synchronised (NTP)",
                     "the node needs NTP: check `timedatectl timesync-status` and that UDP 123 "
                     "reaches a time server; evidence timestamps depend on it")
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
               mqtt_timeout_s: float = 8.0) -> list[Check]:
    """Every check, in the order a technician would fix things."""
    skip = set(skip)
    first, cfg = check_config(Path(config_path))
    checks = [first]
    if cfg is None:
        return checks
    if "service" not in skip:
        checks.append(_guard("service", check_service))
    if "cameras" not in skip:
        cams = [c for c in cfg.cameras if c.enabled]
        checks += [_guard(f"camera:{c.name}", lambda c=c: check_camera(c, camera_timeout_s))
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
    checks += [_guard(name, func) for name, func in plan if name not in skip]
    return checks


def exit_code(checks: list[Check]) -> int:
    """0 all passed, 78 config invalid, 1 anything else failed."""
    if checks and checks[0].name == "config" and checks[0].failed:
        return config_mod.EX_CONFIG
    return EX_FAILED if any(c.failed for c in checks) else 0


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": not any(c.failed for c in checks), "exit_code": exit_code(checks),
            "checks": [asdict(c) for c in checks]}
