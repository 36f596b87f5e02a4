"""Doctor checks of what is wired to the node: cameras (ffprobe), the recordings disk
(statvfs, mountinfo, a real write), the detection model (tflite_runtime) and the GPIO pins
(gpiozero). Each returns a `Check` with a hint a technician can act on."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from drivers.cameras.rtsp import with_credentials
from firmware import config as config_mod
from firmware.provision.check import FAIL, OK, SKIP, WARN, Check

# ---- cameras ---------------------------------------------------------------------------


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
        data, err = _probe(args, with_credentials(cam.url, cam.username, password), timeout_s)
        shown = _mask(cam.url)
        sub_data, sub_err = {}, ""
        if cam.substream_url and not err:
            sub_data, sub_err = _probe(
                args, with_credentials(cam.substream_url, cam.username, password), timeout_s)
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
        return ("wrong camera username or password: check cameras[].username and, in the "
                "boot file's [secrets], \"cameras.<name>.password\" (then reboot)")
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
        return Check("storage", FAIL, f"{path} does not exist (the SSD is not mounted)",
                     "plug in the SSD, check that `lsblk -f` shows its label (RONDA-REC), "
                     "then `sudo mount -a && sudo systemctl restart ronda` (or reboot); a new "
                     "SSD: set [provision.storage] format_device in the boot file. Do not "
                     "create the folder by hand: the mount point is kept immutable so that "
                     "recordings never fill the SD card")
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


def _gpio_pins(gpio: Any) -> list[str]:
    """The configured pins as "role=pin", in the order `Panel` claims them."""
    pins = [f"{role}={out.pin}" for role in ("siren", "light", "status_led", "buzzer")
            if (out := getattr(gpio, role)) is not None]
    pins += [f"panic[{i}]={pin.pin}" for i, pin in enumerate(gpio.panic)]
    if gpio.ack:
        pins.append(f"ack={gpio.ack.pin}")
    return pins


def check_gpio(cfg: config_mod.Config, test_outputs: bool = False,
               pulse_s: float = 0.5, factory: Any = None) -> Check:
    """Claim every configured pin as the daemon does (its pin factory, its `Panel`: same
    pulls, Jetson layer, outputs driven off first); with `test_outputs`, pulse the siren
    and the light through that panel. `factory`: a pin factory to use instead (tests)."""
    gpio = cfg.gpio
    if not gpio.enabled:
        return Check("gpio", SKIP, "GPIO disabled ([gpio] enabled = false)")
    from gpiozero.exc import GPIOZeroError

    from drivers.gpio.factory import make_pin_factory
    from drivers.gpio.panel import Panel

    pins = _gpio_pins(gpio)
    from drivers.gpio.factory import real_board

    board = real_board()
    if gpio.pin_factory == "mock" and board and factory is None:
        return Check("gpio", FAIL, f'pin_factory = "mock" on a real {board}: the panic '
                     "button and the siren are simulated, not wired",
                     'set [gpio] pin_factory = "auto" (lgpio on a Pi 5)', {"pins": pins})
    pulsed: list[str] = []
    own_factory = factory is None
    panel = None
    try:
        if factory is None:
            factory = make_pin_factory(gpio.pin_factory, gpio.jetson_numbering)
        panel = Panel(gpio, factory)
        if test_outputs:
            for role in ("siren", "light"):
                out = getattr(panel, role)
                if out is not None:
                    out.on(cause="doctor")
                    time.sleep(pulse_s)
                    out.off(cause="doctor")
                    pulsed.append(role)
    except (GPIOZeroError, OSError, ValueError, RuntimeError) as exc:  # PinFactoryError too
        return Check("gpio", FAIL, f"{type(exc).__name__}: {exc} (pins: "
                     f"{', '.join(pins) or 'none'})",
                     "stop the daemon first (systemctl stop ronda); check the pin numbers "
                     "(BCM on a Pi, gpio.jetson_numbering on a Jetson) and gpio.pin_factory "
                     "(auto: lgpio on a Pi 5), and that the user is in the gpio group",
                     {"claimed": [], "pins": pins})
    finally:
        if panel is not None:
            with contextlib.suppress(Exception):
                panel.close()
        if own_factory and factory is not None:
            with contextlib.suppress(Exception):
                factory.close()
    if not pins:
        return Check("gpio", WARN, "no pins configured",
                     "wire the panic button and siren, then set [gpio] panic/siren pins")
    detail = "claimed " + ", ".join(pins)
    if pulsed:
        detail += f"; pulsed {' and '.join(pulsed)} {pulse_s:g} s"
    return Check("gpio", OK, detail, data={"claimed": pins, "pulsed": pulsed})
