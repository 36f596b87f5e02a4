"""Safe mode: whatever is wrong with ronda.toml, the real `ronda run` (mock pins) keeps a
panic button that drives the siren, and says "config rejected: <field>: <reason>"."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from alarm_kit import wait_for
from test_alarm_daemon import CommandCenter

from drivers.process import spawn, terminate
from firmware import config
from firmware.fallback import safe_config, save_last_good

ROOT = Path(__file__).resolve().parents[2]
NODE = "daemon-rw07"  # CommandCenter listens under this node id


def start(config_path: Path, **env: str) -> subprocess.Popen:
    with open(config_path.with_suffix(".log"), "wb") as log:
        return spawn([sys.executable, "-m", "firmware", "run", "--config", str(config_path)],
                     cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                     stdout=subprocess.DEVNULL, stderr=log)


def test_a_typo_in_a_camera_still_gives_a_panic_button_and_says_why(tmp_path, broker):
    bad = tmp_path / "ronda.toml"
    bad.write_text(f"""
[node]
id = "{NODE}"
data_dir = "{tmp_path / 'state'}"
[mqtt]
brokers = ["{broker.url}"]
prefix = "{broker.prefix}"
[[cameras]]
name = "gang-utara"
urll = "rtsp://10.0.0.11/stream1"
[gpio]
pin_factory = "mock"
panic = [{{ pin = 5 }}]
siren = {{ pin = 6 }}
""")
    cc = CommandCenter(broker.port, broker.prefix)
    node = start(bad)
    try:
        health = wait_for(lambda: [d for d in cc.docs("health") if d.get("last_error")], 30,
                          "a health report")[-1]
        assert health["last_error"].startswith("config rejected: cameras[0]")
        node.send_signal(signal.SIGUSR1)  # press the mock panic button on pin 5
        wait_for(lambda: [d for d in cc.docs("outputs/siren") if d["state"] == "panic"], 15,
                 "the siren sounding")
        wait_for(lambda: [d for d in cc.docs("events") if d["type"] == "panic"], 10,
                 "the panic event")
        assert node.poll() is None
    finally:
        terminate(node, timeout=8)
        cc.stop()
    assert node.returncode == 0
    log = bad.with_suffix(".log").read_text()
    assert "cameras[0].urll: unknown key" in log and "SAFE MODE" in log


def test_unusable_gpio_section_falls_back_to_the_standard_pins(tmp_path):
    """[gpio] itself is wrong and nothing was ever good: the image's defaults (panic on
    GPIO17, siren GPIO27) run; GPIOZERO_PIN_FACTORY=mock stands in for the board."""
    bad = tmp_path / "ronda.toml"
    bad.write_text(f'[node]\nid = "rw05"\ndata_dir = "{tmp_path / "state"}"\n'
                   '[gpio]\npanic = [{ pin = 17, pul_up = true }]\n')
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    node = start(bad, GPIOZERO_PIN_FACTORY="mock", RUNTIME_DIRECTORY=str(run_dir))
    health_file = run_dir / "health.json"

    def alarm() -> dict:
        try:
            return json.loads(health_file.read_text())["components"]["alarm"]
        except (OSError, ValueError, KeyError):
            return {}

    try:
        first = wait_for(lambda: alarm().get("outputs"), 30, "the alarm's health")
        assert set(first) >= {"siren", "light", "status_led"}
        node.send_signal(signal.SIGUSR1)
        wait_for(lambda: alarm().get("outputs", {}).get("siren", {}).get("state") == "panic", 30,
                 "the siren on in health.json")
        report = json.loads(health_file.read_text())
        assert report["config_rejected"]["sources"]["gpio"] == "the image's safe defaults"
        assert report["last_error"].startswith("config rejected: gpio.panic[0].pul_up")
        assert alarm()["status_led"] in ("alarm", "config_rejected")
    finally:
        terminate(node, timeout=8)
    assert node.returncode == 0


def test_safe_config_prefers_the_files_gpio_then_the_last_good_one(tmp_path):
    state = tmp_path / "state"
    good = config.parse({"node": {"id": "rw05", "data_dir": str(state)},
                         "gpio": {"panic": [{"pin": 5}], "siren": {"pin": 6}},
                         "alarm": {"siren_max_s": 60}})
    state.mkdir()
    save_last_good(good)
    bad = tmp_path / "ronda.toml"
    bad.write_text(f'[node]\nid = "rw05"\ndata_dir = "{state}"\n'
                   '[gpio]\nsiren = { pin = "x", active = true }\n'
                   '[alarm]\nsiren_max_s = 30\n[recorder]\nquota = "lots"\n')
    with_error = config.ConfigError(str(bad), [config.Problem("recorder.quota", "bad")])
    cfg, why = safe_config(bad, with_error)
    assert [p.pin for p in cfg.gpio.panic] == [5] and cfg.gpio.siren.pin == 6
    assert cfg.alarm.siren_max_s == 30  # the file's own [alarm] is valid: it wins
    assert why.sources == {"gpio": "the last good config", "alarm": "the rejected file",
                           "mqtt": "off"}
    assert not cfg.recorder.enabled and not cfg.detect.enabled and cfg.cameras == []
    assert why.reason == "config rejected: recorder.quota: bad"


def test_a_missing_file_runs_on_the_documented_default_pins(tmp_path):
    missing = tmp_path / "absent.toml"
    try:
        config.load(missing)
    except config.ConfigError as exc:
        cfg, why = safe_config(missing, exc)
    assert [p.pin for p in cfg.gpio.panic] == [17]
    assert (cfg.gpio.siren.pin, cfg.gpio.light.pin, cfg.gpio.status_led.pin) == (27, 22, 23)
    assert cfg.alarm.siren_max_s == 180
    assert why.reason.startswith("config rejected: (file): No such file")
    example = config.tomllib.loads((ROOT / "image/boot/ronda.toml.example").read_text())
    assert example["gpio"]["panic"][0]["pin"] == 17 and example["gpio"]["siren"]["pin"] == 27


def test_a_refused_boot_file_is_what_a_node_without_config_reports(tmp_path):
    """Fresh image, one typo: firstboot refuses the boot file and records it; the daemon's
    safe mode names the boot file and the field, and takes the file's own [gpio]."""
    from firmware.fallback import boot_rejection
    from firmware.provision.firstboot import ProvisionError, firstboot

    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    (boot / "ronda.toml").write_text('[node]\nid = "rw05"\n[gpio]\npanic = [{ pin = 5 }]\n'
                                     'siren = { pin = 6 }\n[recorder]\nquota = "banyak"\n')
    with pytest.raises(ProvisionError):
        firstboot(boot, root)
    why = boot_rejection(root / "var/lib/ronda")
    assert why is not None and why.problems[0].startswith("recorder.quota")
    missing = root / "etc/ronda/ronda.toml"
    try:
        config.load(missing)
    except config.ConfigError as exc:
        cfg, rejected = safe_config(missing, exc, why)
    assert rejected.source == str(boot / "ronda.toml")
    assert rejected.reason.startswith("config rejected: recorder.quota")
    assert [p.pin for p in cfg.gpio.panic] == [5] and cfg.gpio.siren.pin == 6


def test_outputs_off_after_a_safe_mode_run_drives_the_safe_pins(tmp_path):
    """ExecStopPost's `ronda outputs-off` with the same bad file: the pins safe mode drove."""
    bad = tmp_path / "ronda.toml"
    bad.write_text('[node]\nid = "rw05"\n[gpio]\npin_factory = "mock"\nsiren = { pin = 6 }\n'
                   '[recorder]\nquota = "banyak"\n')
    result = subprocess.run([sys.executable, "-m", "firmware", "outputs-off", "-c", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "siren (pin 6) off" in result.stdout
    assert "config rejected: recorder.quota" in result.stderr


def test_fresh_image_with_a_bad_boot_file_boots_to_a_working_panic_button(tmp_path):
    """The whole path: first boot refuses the card (one typo), no config is installed, the
    real `ronda run` (as ronda.service starts it) takes the card's [gpio] and its panic pin
    drives the siren; health names the card's file and field."""
    from firmware.provision.firstboot import ProvisionError, firstboot

    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    (boot / "ronda.toml").write_text(
        '[node]\nid = "rw05"\n[mqtt]\nenabled = false\n'
        '[gpio]\npin_factory = "mock"\npanic = [{ pin = 5 }]\nsiren = { pin = 6 }\n'
        '[recorder]\nquota = "banyak"\n')
    with pytest.raises(ProvisionError):
        firstboot(boot, root)
    state = root / "var/lib/ronda"
    (root / "etc/ronda").mkdir(parents=True)  # the image's /etc/ronda, still without a config
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    node = start(root / "etc/ronda/ronda.toml", RONDA_DATA_DIR=str(state),
                 RUNTIME_DIRECTORY=str(run_dir))
    health_file = run_dir / "health.json"

    def report() -> dict:
        try:
            return json.loads(health_file.read_text())
        except (OSError, ValueError):
            return {}

    try:
        first = wait_for(report, 30, "the health file")
        assert first["last_error"].startswith("config rejected: recorder.quota")
        assert first["config_rejected"]["file"] == str(boot / "ronda.toml")
        node.send_signal(signal.SIGUSR1)  # the card's panic pin 5
        wait_for(lambda: report().get("components", {}).get("alarm", {}).get("outputs", {})
                 .get("siren", {}).get("state") == "panic", 30, "the siren on pin 6")
    finally:
        terminate(node, timeout=8)
    assert node.returncode == 0


def test_an_unusable_data_dir_does_not_stop_safe_mode(tmp_path, monkeypatch):
    import firmware.fallback as fallback

    monkeypatch.setattr(fallback, "DEFAULT_DATA_DIR", tmp_path / "state")
    bad = tmp_path / "ronda.toml"
    bad.write_text('[node]\nid = "rw05"\ndata_dir = "/proc/ronda-cannot-be-here"\n'
                   '[recorder]\nquota = "banyak"\n')
    cfg, _ = safe_config(bad, config.ConfigError(str(bad), [config.Problem("x", "y")]))
    assert cfg.node.data_dir == tmp_path / "state" and cfg.node.id == "rw05"


def _rejected_with_unbuildable_gpio(tmp_path: Path) -> tuple[Path, Path]:
    """A refused file whose [gpio] passes validation but cannot be claimed (`5` and
    `"GPIO5"` are one pin), and a last good [gpio] (mock pins 7 and 8) in its data dir."""
    state = tmp_path / "state"
    state.mkdir()
    save_last_good(config.parse({"node": {"id": "rw05", "data_dir": str(state)},
                                 "gpio": {"pin_factory": "mock", "panic": [{"pin": 7}],
                                          "siren": {"pin": 8}}}))
    bad = tmp_path / "ronda.toml"
    bad.write_text(f'[node]\nid = "rw05"\ndata_dir = "{state}"\n'
                   '[gpio]\npin_factory = "mock"\npanic = [{ pin = 5 }]\n'
                   'siren = { pin = "GPIO5" }\n[recorder]\nquota = "banyak"\n')
    return bad, state


def test_a_refused_files_gpio_that_cannot_be_claimed_falls_back_to_the_next(tmp_path):
    from firmware.daemon import Daemon

    bad, _ = _rejected_with_unbuildable_gpio(tmp_path)
    try:
        config.load(bad)
    except config.ConfigError as exc:
        cfg, why = safe_config(bad, exc)
    assert why.sources["gpio"] == "the rejected file"  # valid on paper
    daemon = Daemon(cfg, rejected=why)
    alarm = next(c for c in daemon.components if c.name == "alarm")
    try:
        assert alarm.panel is not None, alarm.gpio_error
        assert [b.spec.pin for b in alarm.panel.buttons] == [7]
        assert alarm.panel.siren is not None and alarm.panel.siren.device.pin.info.name == "GPIO8"
        assert daemon.health()["config_rejected"]["sources"]["gpio"] == "the last good config"
    finally:
        if alarm.panel is not None:
            alarm.panel.close()


def test_outputs_off_drives_the_pins_safe_mode_could_claim(tmp_path):
    bad, _ = _rejected_with_unbuildable_gpio(tmp_path)
    result = subprocess.run([sys.executable, "-m", "firmware", "outputs-off", "-c", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "siren (pin 8) off" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


def test_a_gpio_that_cannot_be_claimed_is_never_saved_as_last_good(tmp_path):
    from firmware.daemon import Daemon
    from firmware.fallback import last_good_path

    _, state = _rejected_with_unbuildable_gpio(tmp_path)
    before = last_good_path(state).read_text()
    broken = config.parse({"node": {"id": "rw05", "data_dir": str(state)},
                           "gpio": {"pin_factory": "mock", "panic": [{"pin": 5}],
                                    "siren": {"pin": "GPIO5"}}})
    daemon = Daemon(broken)
    alarm = next(c for c in daemon.components if c.name == "alarm")
    assert alarm.panel is None and alarm.gpio_error
    assert last_good_path(state).read_text() == before


def test_a_file_not_in_utf8_is_a_config_error_and_safe_mode_runs(tmp_path):
    """One Latin-1 'é' (Notepad's ANSI) must not crash `ronda run` into a restart loop
    without a panic button: it is a named config error, and safe mode takes over."""
    bad = tmp_path / "ronda.toml"
    bad.write_bytes(b'[node]\nid = "rw05"\nname = "Pos Ronda Kemirirejo \xe9"\n')
    with pytest.raises(config.ConfigError) as info:
        config.load(bad)
    assert info.value.problems[0].path == "(syntax)" and "UTF-8" in str(info.value.problems[0])
    cfg, why = safe_config(bad, info.value)
    assert why.sources["gpio"] == "the image's safe defaults" and cfg.gpio.siren.pin == 27
    result = subprocess.run([sys.executable, "-m", "firmware", "outputs-off", "-c", str(bad)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT),
                                 "RONDA_DATA_DIR": str(tmp_path / "state"),
                                 "GPIOZERO_PIN_FACTORY": "mock"})
    assert result.returncode == 0, result.stderr
    assert "siren (pin 27) off" in result.stdout


def test_outputs_off_on_a_fresh_image_drives_the_boot_files_siren(tmp_path):
    """No installed config, the card refused: safe mode ran the card's siren (pin 6), so
    ExecStopPost's outputs-off must drive that pin off, not the image's default one."""
    from firmware.provision.firstboot import ProvisionError, firstboot

    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    (boot / "ronda.toml").write_text(
        '[node]\nid = "rw05"\n[gpio]\npin_factory = "mock"\npanic = [{ pin = 5 }]\n'
        'siren = { pin = 6 }\n[recorder]\nquota = "banyak"\n')
    with pytest.raises(ProvisionError):
        firstboot(boot, root)
    result = subprocess.run(
        [sys.executable, "-m", "firmware", "outputs-off", "-c",
         str(root / "etc/ronda/ronda.toml")], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT), "GPIOZERO_PIN_FACTORY": "mock",
                         "RONDA_DATA_DIR": str(root / "var/lib/ronda")})
    assert "siren (pin 6) off" in result.stdout, result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


def test_mqtt_stays_off_when_the_node_section_is_invalid(tmp_path):
    """[mqtt] is fine but node.id is not: publishing under a made-up id (the hostname, the
    same 'raspberrypi' on every fresh card) would speak for another post; MQTT stays off."""
    bad = tmp_path / "ronda.toml"
    bad.write_text(f'[node]\nid = "RW 05"\ndata_dir = "{tmp_path / "state"}"\n'
                   '[mqtt]\nbrokers = ["mqtt://127.0.0.1:1883"]\n')
    with pytest.raises(config.ConfigError) as info:
        config.load(bad)
    cfg, why = safe_config(bad, info.value)
    assert why.sources["mqtt"] == "off" and not cfg.mqtt.enabled


def test_a_valid_config_whose_data_dir_cannot_be_made_still_runs_the_panel(tmp_path,
                                                                          monkeypatch):
    """data_dir on the SSD, the SSD gone: the daemon must not crash into a restart loop
    without a panic button; it keeps its state in the default dir and says why."""
    import firmware.fallback as fallback
    from firmware.daemon import Daemon

    monkeypatch.setattr(fallback, "DEFAULT_DATA_DIR", tmp_path / "state")
    (tmp_path / "ssd").write_text("not a directory")
    cfg = config.parse({"node": {"id": "rw05", "data_dir": str(tmp_path / "ssd/state")},
                        "gpio": {"pin_factory": "mock", "panic": [{"pin": 5}],
                                 "siren": {"pin": 6}}})
    daemon = Daemon(cfg)
    alarm = next(c for c in daemon.components if c.name == "alarm")
    try:
        assert alarm.panel is not None and daemon.state_dir == tmp_path / "state"
        assert "ssd/state" in daemon.health()["faults"]["node"]
    finally:
        alarm.panel.close()
