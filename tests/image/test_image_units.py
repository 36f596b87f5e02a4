"""The systemd units pass `systemd-analyze verify` and say what the brief requires.

`verify` checks that ExecStart binaries exist, so the units are verified from a test copy
whose /opt/ronda/current/bin/ronda points at a real executable in tmp_path; everything
else in the unit is verified as shipped.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "image" / "systemd"
SHIPPED_BIN = "/opt/ronda/current/bin/ronda"

pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze not installed")


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def _verify(tmp_path: Path, *names: str) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "bin" / "ronda"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    copies = []
    for name in names:
        text = (UNITS / name).read_text()
        assert SHIPPED_BIN in text
        (tmp_path / name).write_text(text.replace(SHIPPED_BIN, str(fake)))
        copies.append(str(tmp_path / name))
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *copies],
                          capture_output=True, text=True, timeout=60)


def test_units_verify_clean(tmp_path):
    proc = _verify(tmp_path, "ronda.service", "ronda-firstboot.service")
    own = [ln for ln in proc.stderr.splitlines() if "ronda" in ln]
    assert proc.returncode == 0 and not own, proc.stderr


def test_verify_catches_a_broken_unit(tmp_path):
    """The harness can fail: a typo in a directive is reported."""
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(UNITS / "ronda.service", bad / "ronda.service")
    text = (bad / "ronda.service").read_text().replace("Type=notify", "Type=notfy")
    (bad / "ronda.service").write_text(text)
    proc = _verify_dir(bad)
    assert "notfy" in proc.stderr


def _verify_dir(path: Path) -> subprocess.CompletedProcess[str]:
    fake = path / "ronda-bin"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    unit = path / "ronda.service"
    unit.write_text(unit.read_text().replace(SHIPPED_BIN, str(fake)))
    return subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)


def test_daemon_unit_contract():
    svc = _unit("ronda.service")
    s, u = svc["Service"], svc["Unit"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["WatchdogSec"] == "30" and s["Restart"] == "on-failure"
    assert int(u["StartLimitBurst"]) >= 3 and int(u["StartLimitIntervalSec"]) > 0
    assert s["User"] == "ronda" and set(s["SupplementaryGroups"].split()) == {"gpio", "video"}
    assert s["ProtectSystem"] == "strict"
    assert set(s["ReadWritePaths"].split()) == {"/var/lib/ronda", "/srv/ronda"}
    for key in ("PrivateTmp", "NoNewPrivileges", "ProtectHome", "ProtectKernelTunables"):
        assert s[key] == "yes", key
    assert s["KillMode"] == "control-group" and s["TimeoutStopSec"] == "10"
    assert s["ExecStart"] == f"{SHIPPED_BIN} run --config /etc/ronda/ronda.toml"
    assert s["RestartPreventExitStatus"] == "78"
    # outputs off after any exit, kill -9 included; its failure must not fail the unit
    assert s["ExecStopPost"] == f"-{SHIPPED_BIN} outputs-off --config /etc/ronda/ronda.toml"
    # an implied DeviceAllow= (ProtectClock, PrivateDevices) would lock out GPIO and cameras
    text = (UNITS / "ronda.service").read_text()
    assert "\nProtectClock=" not in text and "\nDeviceAllow=" not in text
    assert s["PrivateDevices"] == "no"


def test_firstboot_unit_contract():
    unit = _unit("ronda-firstboot.service")
    assert unit["Service"]["Type"] == "oneshot"
    assert "ronda.service" in unit["Unit"]["Before"].split()
    text = (UNITS / "ronda-firstboot.service").read_text()  # repeated keys: read the lines
    conditions = [ln.split("=", 1)[1] for ln in text.splitlines()
                  if ln.startswith("ConditionPathExists=")]
    assert conditions == ["|/boot/firmware/ronda.toml", "|/boot/firmware/ronda.toml.txt"]
    assert unit["Service"]["ExecStart"].startswith(f"{SHIPPED_BIN} firstboot")


def test_exec_stop_post_drives_the_outputs_off_with_the_real_cli(tmp_path):
    """The unit's ExecStopPost line, run as written (with this repo's ronda in place of
    the installed one), is accepted by `ronda outputs-off` and drives every output off."""
    import sys

    line = _unit("ronda.service")["Service"]["ExecStopPost"]
    argv = line.removeprefix("-").split()
    assert argv[0] == SHIPPED_BIN
    cfg = tmp_path / "ronda.toml"
    cfg.write_text('[node]\nid = "rw"\n[mqtt]\nenabled = false\n[gpio]\npin_factory = "mock"\n'
                   "siren = { pin = 17, active_high = false }\nlight = { pin = 27 }\n")
    argv = [a.replace("/etc/ronda/ronda.toml", str(cfg)) for a in argv[1:]]
    proc = subprocess.run([sys.executable, "-m", "firmware", *argv], capture_output=True,
                          text=True, timeout=60, cwd=UNITS.parents[1])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["siren (pin 17) off", "light (pin 27) off"]
