"""`ronda doctor` tells the truth about first boot, safe mode and stale settings, and its
hints work on the image; `ronda check-config` takes the boot-partition form."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware.cli import main
from firmware.provision import doctor
from firmware.provision.firstboot import ProvisionError, firstboot

ROOT = Path(__file__).resolve().parents[2]
GOOD = ('[node]\nid = "rw05"\n[mqtt]\nbrokers = ["mqtt://127.0.0.1:1"]\nusername = "rw05"\n'
        '[gpio]\nenabled = false\n[secrets]\n"mqtt.password" = "sangat-rahasia"\n')
# The doctor tests install into a temp root: no secrets (their files would be at /etc/ronda)
PLAIN = '[node]\nid = "rw05"\n[mqtt]\nusername = "rw05"\n[gpio]\nenabled = false\n'


def run_doctor(capsys, *args: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", "--skip", "service,cameras,storage,model,gpio,mqtt,"
                 "clock,power", *args])
    return code, {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Path]:
    paths = {"boot": tmp_path / "boot", "root": tmp_path / "root"}
    paths["boot"].mkdir()
    (paths["root"] / "etc").mkdir(parents=True)
    paths["state"] = paths["root"] / "var/lib/ronda"
    paths["config"] = paths["root"] / "etc/ronda/ronda.toml"
    paths["health"] = tmp_path / "health.json"
    return paths


def doctor_args(node: dict[str, Path]) -> list[str]:
    return ["--config", str(node["config"]), "--boot", str(node["boot"]),
            "--state-dir", str(node["state"]), "--health-file", str(node["health"])]


def test_fresh_image_with_a_typo_blames_the_boot_file_and_field(node, capsys):
    (node["boot"] / "ronda.toml").write_text(PLAIN.replace('id = "rw05"', 'id = "RW 05"'))
    with pytest.raises(ProvisionError):
        firstboot(node["boot"], node["root"])
    code, checks = run_doctor(capsys, *doctor_args(node))
    assert code == 78
    config = checks["config"]
    assert str(node["boot"] / "ronda.toml") in config["detail"] and "node.id" in config["detail"]
    assert "safe mode" in config["detail"] and "reboot" in config["hint"]
    first = checks["firstboot"]
    assert first["status"] == "fail" and "node.id" in first["detail"]


def test_a_later_rejected_edit_is_not_all_green(node, capsys):
    (node["boot"] / "ronda.toml").write_text(PLAIN)
    assert firstboot(node["boot"], node["root"]).applied
    code, checks = run_doctor(capsys, *doctor_args(node))
    assert code == 0 and checks["firstboot"]["status"] == "ok"
    text = (node["boot"] / "ronda.toml").read_text()
    (node["boot"] / "ronda.toml").write_text(text.replace('username = "rw05"',
                                                          'usrname = "rw05"'))
    with pytest.raises(ProvisionError):
        firstboot(node["boot"], node["root"])
    code, checks = run_doctor(capsys, *doctor_args(node))
    assert code == 1 and checks["config"]["status"] == "ok"  # the old settings still run
    assert checks["firstboot"]["status"] == "fail"
    assert "mqtt.usrname" in checks["firstboot"]["detail"]


def test_an_edit_not_yet_applied_says_the_running_config_is_older(node, capsys):
    (node["boot"] / "ronda.toml").write_text(PLAIN)
    firstboot(node["boot"], node["root"])
    with (node["boot"] / "ronda.toml").open("a") as fh:
        fh.write("# edited on a laptop\n")
    _, checks = run_doctor(capsys, *doctor_args(node))
    assert checks["firstboot"]["status"] == "warn"
    assert "older settings" in checks["firstboot"]["detail"]


def test_the_daemons_safe_mode_and_stale_settings_are_reported(node, capsys):
    (node["boot"] / "ronda.toml").write_text(PLAIN)
    firstboot(node["boot"], node["root"])
    now = time.time()
    node["health"].write_text(json.dumps({"ts": now, "uptime_s": 5, "version": "0.1.0",
                                          "config_rejected": {"reason": "config rejected: x: y",
                                                              "file": "/etc/ronda/ronda.toml"}}))
    code, checks = run_doctor(capsys, *doctor_args(node))
    assert code == 1 and checks["daemon"]["status"] == "fail"
    assert "SAFE MODE: config rejected: x: y" in checks["daemon"]["detail"]
    node["health"].write_text(json.dumps({"ts": now - 3600, "uptime_s": 60,
                                          "version": "0.1.0"}))
    _, checks = run_doctor(capsys, *doctor_args(node))
    assert checks["daemon"]["status"] == "warn" and "older" in checks["daemon"]["detail"]


def test_check_config_takes_the_boot_form_and_hides_secrets(tmp_path):
    boot = tmp_path / "ronda.toml"
    boot.write_text(GOOD)

    def check(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "firmware", "check-config", str(path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    ok = check(boot)
    assert ok.returncode == 0 and "valid boot-partition file" in ok.stdout
    boot.write_text(GOOD.replace('"sangat-rahasia"', '""'))  # a card first boot blanked
    assert check(boot).returncode == 0
    boot.write_text(GOOD)
    boot.write_text(GOOD.replace('id = "rw05"', 'id = "-x"'))
    bad = check(boot)
    assert bad.returncode == 78 and "node.id" in bad.stderr
    assert "sangat-rahasia" not in bad.stderr + bad.stdout
    plain = tmp_path / "installed.toml"  # a password typed into the wrong place
    plain.write_text('[node]\nid = "rw05"\n[mqtt]\npassword = "sangat-rahasia"\n')
    wrong = check(plain)
    assert wrong.returncode == 78 and "mqtt.password" in wrong.stderr
    assert "sangat-rahasia" not in wrong.stderr


def test_hints_name_what_exists_on_the_image(tmp_path, monkeypatch):
    from firmware import config
    from firmware.provision.devices import _camera_hint, check_storage

    assert '"cameras.<name>.password"' in _camera_hint("401 Unauthorized")
    cfg = config.parse({"node": {"id": "rw05"},
                        "recorder": {"path": str(tmp_path / "absent")}})
    hint = check_storage(cfg).hint
    assert "mkdir" not in hint and "mount -a" in hint
    monkeypatch.setattr(doctor.platform, "clock_synced", lambda: False)
    assert "timesync-status" not in doctor.check_clock().hint
    assert "timedatectl status" in doctor.check_clock().hint
