"""`ronda doctor --json` against a working node set-up and against broken ones.

Real parts: an RTSP camera (GStreamer) behind basic auth, Mosquitto, the MediaPipe tflite
model, a tmpfs recordings mount (remounted read-only for the broken case), gpiozero mock
pins. Clock and power depend on the machine, so the working case skips them and separate
tests check their verdicts.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker import free_port
from devtools.rtsp_camera import RtspTestCamera
from firmware.cli import main
from firmware.provision import doctor

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def camera() -> Iterator[RtspTestCamera]:
    with RtspTestCamera(user="admin", password="kamera-rw05", seconds=4) as cam:
        yield cam


@pytest.fixture
def recordings(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "ssd"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,noatime", "tmpfs", str(mnt)],
                   check=True)
    (mnt / "recordings").mkdir()
    yield mnt / "recordings"
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def write_config(tmp_path: Path, *, camera_url: str, broker_port: int, recordings: Path,
                 model: Path, extra: str = "") -> Path:
    secret = tmp_path / "camera.password"
    secret.write_text("kamera-rw05\n")
    secret.chmod(0o600)
    path = tmp_path / "ronda.toml"
    path.write_text(f"""
[node]
id = "test-rw05"
data_dir = "{tmp_path / 'state'}"

[mqtt]
brokers = ["mqtt://127.0.0.1:{broker_port}"]

[[cameras]]
name = "gang-utara"
url = "{camera_url}"
username = "admin"
password_file = "{secret}"
timeout_s = 5

[recorder]
path = "{recordings}"
min_free = "1 MiB"

[detect]
enabled = true
model = "{model}"

[gpio]
pin_factory = "mock"
siren = {{ pin = 17 }}
light = {{ pin = 27 }}
panic = [{{ pin = 22 }}]
{extra}
""")
    return path


def run_doctor(capsys, cfg: Path, *extra: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", "--config", str(cfg), "--timeout", "5", *extra])
    return code, json.loads(capsys.readouterr().out)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def test_working_node_passes_every_check(tmp_path, capsys, camera, broker, recordings,
                                         models_dir):
    cfg = write_config(tmp_path, camera_url=camera.plain_url, broker_port=broker.port,
                       recordings=recordings, model=models_dir / "pose_detection.tflite")
    code, report = run_doctor(capsys, cfg, "--skip", "clock,power", "--test-outputs")
    checks = by_name(report)
    assert code == 0 and report["ok"], report
    assert list(checks) == ["config", "service", "camera:gang-utara", "storage", "model",
                            "gpio", "mqtt"]
    assert checks["service"]["status"] == "skip"  # no systemd in the test container
    cam = checks["camera:gang-utara"]["data"]
    assert (cam["codec"], cam["width"], cam["height"]) == ("h264", 640, 360)
    assert cam["fps"] == pytest.approx(15, abs=1)
    storage = checks["storage"]["data"]
    assert storage["fstype"] == "tmpfs" and "noatime" in storage["options"]
    assert 0 < storage["free_bytes"] <= 16 * 2**20
    assert checks["model"]["data"]["input"] == "1x224x224x3"
    assert checks["gpio"]["data"]["pulsed"] == ["siren", "light"]
    assert checks["mqtt"]["data"]["round_trip_ms"] > 0


def test_substream_is_probed_too(tmp_path, capsys, camera, broker, recordings, models_dir):
    cfg = write_config(tmp_path, camera_url=camera.plain_url, broker_port=broker.port,
                       recordings=recordings, model=models_dir / "pose_detection.tflite")
    text = cfg.read_text().replace("timeout_s = 5", f'timeout_s = 5\nsubstream_url = '
                                   f'"rtsp://127.0.0.1:{camera.port}/nothing-here"')
    cfg.write_text(text)
    code, report = run_doctor(capsys, cfg, "--skip", "clock,power,gpio,model,mqtt,storage")
    cam = by_name(report)["camera:gang-utara"]
    assert code == 1 and cam["status"] == "fail", cam
    assert "substream" in cam["detail"] and "substream_url" in cam["hint"]
    assert cam["data"]["codec"] == "h264"  # the main stream itself is fine
    cfg.write_text(text.replace("/nothing-here", "/cam"))
    code, report = run_doctor(capsys, cfg, "--skip", "clock,power,gpio,model,mqtt,storage")
    cam = by_name(report)["camera:gang-utara"]
    assert code == 0 and cam["data"]["substream"]["width"] == 640


def test_camera_down_and_wrong_password_name_the_camera(tmp_path, capsys, camera, broker,
                                                        recordings, models_dir):
    cfg = write_config(tmp_path, camera_url=f"rtsp://127.0.0.1:{free_port()}/cam",
                       broker_port=broker.port, recordings=recordings,
                       model=models_dir / "pose_detection.tflite")
    code, report = run_doctor(capsys, cfg, "--skip", "clock,power,gpio,model")
    cam = by_name(report)["camera:gang-utara"]
    assert code == 1 and cam["status"] == "fail"
    assert "port" in cam["hint"] and "kamera-rw05" not in json.dumps(report)
    (tmp_path / "camera.password").write_text("salah\n")
    cfg = write_config(tmp_path, camera_url=camera.plain_url, broker_port=broker.port,
                       recordings=recordings, model=models_dir / "pose_detection.tflite")
    (tmp_path / "camera.password").write_text("salah\n")
    code, report = run_doctor(capsys, cfg, "--skip", "clock,power,gpio,model")
    cam = by_name(report)["camera:gang-utara"]
    assert code == 1 and cam["status"] == "fail" and "password" in cam["hint"], cam
    assert by_name(report)["mqtt"]["status"] == "ok"


def test_broker_down_fails_mqtt_with_a_hint(tmp_path, capsys, recordings, models_dir):
    cfg = write_config(tmp_path, camera_url="rtsp://127.0.0.1:1/x", broker_port=free_port(),
                       recordings=recordings, model=models_dir / "pose_detection.tflite")
    code, report = run_doctor(capsys, cfg, "--skip", "cameras,clock,power")
    mqtt = by_name(report)["mqtt"]
    assert code == 1 and mqtt["status"] == "fail"
    assert "refused" in mqtt["detail"].lower() and "mqtt.brokers" in mqtt["hint"]
    assert by_name(report)["storage"]["status"] == "ok"


def test_read_only_recordings_disk_fails_storage(tmp_path, capsys, broker, recordings,
                                                 models_dir):
    subprocess.run(["mount", "-o", "remount,ro", str(recordings.parent)], check=True)
    cfg = write_config(tmp_path, camera_url="rtsp://127.0.0.1:1/x", broker_port=broker.port,
                       recordings=recordings, model=models_dir / "pose_detection.tflite")
    code, report = run_doctor(capsys, cfg, "--skip", "cameras,clock,power")
    storage = by_name(report)["storage"]
    assert code == 1 and storage["status"] == "fail"
    assert "not writable" in storage["detail"] and "read-only" in storage["hint"]
    assert "ro" in storage["data"]["options"]


def test_broken_model_fails_model(tmp_path, capsys, broker, recordings):
    junk = tmp_path / "model.tflite"
    junk.write_bytes(b"not a model" * 100)
    cfg = write_config(tmp_path, camera_url="rtsp://127.0.0.1:1/x", broker_port=broker.port,
                       recordings=recordings, model=junk)
    code, report = run_doctor(capsys, cfg, "--skip", "cameras,clock,power")
    checks = by_name(report)
    assert code == 1 and [c["name"] for c in report["checks"] if c["status"] == "fail"] == [
        "model"]
    assert "TensorFlow Lite" in checks["model"]["hint"]


def test_pin_held_by_someone_else_fails_gpio(tmp_path, recordings, models_dir):
    from gpiozero import LED
    from gpiozero.pins.mock import MockFactory

    from firmware import config

    cfg = config.load(write_config(tmp_path, camera_url="rtsp://127.0.0.1:1/x",
                                   broker_port=1883, recordings=recordings,
                                   model=models_dir / "pose_detection.tflite"))
    factory = MockFactory()
    holder = LED(27, pin_factory=factory)  # the daemon still running, say
    try:
        check = doctor.check_gpio(cfg, factory=factory)
    finally:
        holder.close()
    assert check.status == "fail" and "systemctl stop ronda" in check.hint
    assert "siren=17" in check.detail and "27" in check.detail
    assert doctor.check_gpio(cfg, factory=factory).status == "ok"


def test_bad_config_exits_78_and_names_the_field(tmp_path, capsys):
    cfg = tmp_path / "ronda.toml"
    cfg.write_text('[node]\nid = "Not Valid"\n')
    code, report = run_doctor(capsys, cfg)
    assert code == 78 and [c["name"] for c in report["checks"]] == ["config"]
    assert "node.id" in report["checks"][0]["detail"]


def test_table_output_names_failures(tmp_path, capsys):
    cfg = tmp_path / "ronda.toml"
    cfg.write_text('[node]\nid = "rw"\n[mqtt]\nenabled = false\n[gpio]\nenabled = false\n'
                   f'[recorder]\npath = "{tmp_path / "nope"}"\n')
    code = main(["doctor", "--config", str(cfg), "--skip", "clock,power"])
    out = capsys.readouterr().out
    assert code == 1 and "storage" in out and "FAIL" in out and "1 failed: storage" in out


def test_power_and_clock_verdicts(monkeypatch):
    monkeypatch.setattr(doctor.platform, "throttled", lambda: ["under_voltage"])
    check = doctor.check_power()
    assert check.status == "fail" and "supply" in check.hint
    monkeypatch.setattr(doctor.platform, "throttled", lambda: ["under_voltage_since_boot"])
    assert doctor.check_power().status == "warn"
    monkeypatch.setattr(doctor.platform, "throttled", lambda: None)
    assert doctor.check_power().status == "skip"
    monkeypatch.setattr(doctor.platform, "clock_synced", lambda: False)
    assert "timedatectl" in doctor.check_clock().hint


def test_unknown_skip_name_is_a_usage_error(tmp_path, capsys):
    assert main(["doctor", "--skip", "camera", "-c", str(tmp_path / "x.toml")]) == 2
    assert "known: service, cameras" in capsys.readouterr().err


def test_service_verdicts_from_systemd_states():
    from firmware.provision.services import ServiceState

    class Manager:
        def __init__(self, state: ServiceState) -> None:
            self._state = state

        def state(self, _unit: str) -> ServiceState:
            return self._state

    def verdict(**kw) -> doctor.Check:
        return doctor.check_service(manager=Manager(ServiceState(**kw)), booted=True)

    assert verdict(active="active", main_pid=7).status == "ok"
    restarted = verdict(active="active", main_pid=7, restarts=3)
    assert restarted.status == "warn" and "journalctl -u ronda" in restarted.hint
    failed = verdict(active="failed", status="exit 78")
    assert failed.status == "fail" and "exit 78" in failed.detail
    assert verdict(active="inactive").status == "warn"
    assert doctor.check_service(booted=False).status == "skip"


def gpio_only_config(tmp_path: Path, gpio: str) -> Path:
    path = tmp_path / "ronda.toml"
    path.write_text(f'[node]\nid = "rw"\n[mqtt]\nenabled = false\n[gpio]\n{gpio}\n')
    return path


def test_gpio_claims_what_the_daemons_panel_claims(tmp_path):
    """External pulls (allowed by the config) and an active-low siren: doctor opens the
    daemon's `Panel` on the configured factory and pulses the siren through it."""
    from gpiozero.pins.mock import MockFactory

    from firmware import config

    cfg = config.load(gpio_only_config(tmp_path, """pin_factory = "mock"
siren = { pin = 17, active_high = false }
panic = [{ pin = 22, pull_up = "external", active_high = true }]
ack = { pin = 23, pull_up = "external", active_high = false }"""))
    factory = MockFactory()
    check = doctor.check_gpio(cfg, test_outputs=True, pulse_s=0.05, factory=factory)
    assert check.status == "ok", check
    assert check.data == {"claimed": ["siren=17", "panic[0]=22", "ack=23"], "pulsed": ["siren"]}
    levels = [s.state for s in factory.pin(17).states]
    # active-low: driven high (off) from the first instant, low for the pulse, high again
    assert levels[-3:] == [True, False, True], levels
    # every pin released: the daemon can claim them right after
    from drivers.gpio.panel import Panel

    Panel(cfg.gpio, factory).close()


def test_gpio_uses_the_daemons_pin_factory_choice(tmp_path, capsys):
    cfg = gpio_only_config(tmp_path, 'pin_factory = "jetson"\nsiren = { pin = 12 }')
    code, report = run_doctor(capsys, cfg, "--skip", "clock,power,cameras,storage,model,mqtt")
    gpio = by_name(report)["gpio"]
    assert code == 1 and gpio["status"] == "fail"
    assert "Jetson.GPIO" in gpio["detail"] and "siren=12" in gpio["detail"]
