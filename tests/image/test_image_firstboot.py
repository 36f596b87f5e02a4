"""`ronda firstboot` against a temp boot partition and root tree."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from firmware import config
from firmware.cli import main
from firmware.provision.firstboot import ProvisionError, firstboot, strip_secrets

GOOD = """\
# Pos Ronda RW 05: edit me on any laptop
[node]
id = "mgl-kemirirejo-rw05"
name = "Pos Ronda RW 05"

[mqtt]
brokers = ["mqtts://cc.example.go.id:8883"]
username = "rw05"

[[cameras]]
name = "gang-utara"
url = "rtsp://10.0.0.11/stream1"
username = "admin"

[provision.network]
wifi_ssid = "RW05-POS"

[provision.storage]
label = "RONDA-REC"

[secrets]
"mqtt.password" = "mqtt-s3cret"   # the broker password
"cameras.gang-utara.password" = "cam-s3cret"
"network.wifi_psk" = "wifi-s3cret"
"""


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n"
                                         "ronda:x:990:990::/var/lib/ronda:/usr/sbin/nologin\n")
    (root / "etc" / "hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n")
    return boot, root


def test_good_file_is_installed_private_and_secrets_leave_the_fat_copy(dirs):
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD)
    result = firstboot(boot, root)
    assert result.applied
    installed = root / "etc/ronda/ronda.toml"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    assert installed.stat().st_uid == 990
    data = config.tomllib.loads(installed.read_text())
    assert "secrets" not in data
    assert data["mqtt"]["password_file"] == "/etc/ronda/secrets/mqtt.password"
    assert data["cameras"][0]["password_file"] == "/etc/ronda/secrets/cameras.gang-utara.password"
    secret = root / "etc/ronda/secrets/mqtt.password"
    assert secret.read_text() == "mqtt-s3cret\n"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    # the boot copy keeps its comments but no secret
    fat = (boot / "ronda.toml").read_text()
    assert "s3cret" not in fat
    assert "# Pos Ronda RW 05: edit me on any laptop" in fat
    assert config.tomllib.loads(fat)["secrets"] == {
        "mqtt.password": "", "cameras.gang-utara.password": "", "network.wifi_psk": ""}
    # hostname, hosts, fstab, wifi
    assert (root / "etc/hostname").read_text() == "mgl-kemirirejo-rw05\n"
    hosts = (root / "etc/hosts").read_text()
    assert "127.0.1.1\tmgl-kemirirejo-rw05" in hosts and "raspberrypi" not in hosts
    fstab = (root / "etc/fstab").read_text()
    assert "LABEL=RONDA-REC\t/srv/ronda\text4\tnoatime" in fstab and "nofail" in fstab
    wifi = root / "etc/NetworkManager/system-connections/ronda-wifi.nmconnection"
    assert "psk=wifi-s3cret" in wifi.read_text()
    assert stat.S_IMODE(wifi.stat().st_mode) == 0o600


def test_installed_config_loads_on_the_node(dirs, tmp_path):
    """The installed file is a valid config once its secret paths point into the root."""
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD)
    firstboot(boot, root)
    text = (root / "etc/ronda/ronda.toml").read_text().replace(
        "/etc/ronda/secrets/", f"{root}/etc/ronda/secrets/")
    (tmp_path / "node.toml").write_text(text)
    cfg = config.load(tmp_path / "node.toml")
    assert config.read_secret(cfg.mqtt.password_file) == "mqtt-s3cret"


def test_second_boot_is_a_noop_and_an_edit_reapplies_keeping_secrets(dirs):
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD)
    firstboot(boot, root)
    assert firstboot(boot, root).reason == "unchanged since last applied"
    fat = (boot / "ronda.toml").read_text().replace('name = "Pos Ronda RW 05"',
                                                   'name = "Pos RW 05 baru"')
    (boot / "ronda.toml").write_text(fat)
    assert firstboot(boot, root).applied
    assert "Pos RW 05 baru" in (root / "etc/ronda/ronda.toml").read_text()
    assert (root / "etc/ronda/secrets/mqtt.password").read_text() == "mqtt-s3cret\n"
    assert "psk=wifi-s3cret" in (
        root / "etc/NetworkManager/system-connections/ronda-wifi.nmconnection").read_text()


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda t: t.replace('id = "mgl-kemirirejo-rw05"', 'id = "Bad Id!"'), "node.id"),
    (lambda t: t.replace("[node]", "[node"), "(syntax)"),
    (lambda t: t.replace('label = "RONDA-REC"', 'lable = "x"'), "provision.storage.lable"),
    (lambda t: t.replace('"cameras.gang-utara.password"', '"cameras.gang-selatan.password"'),
     "no [[cameras]] with name = 'gang-selatan'"),
    (lambda t: t.replace('"mqtt.password"', '"mqtt.pasword"'), "mqtt.pasword_file: unknown key"),
    (lambda t: t + '"mqtt.ca" = "x"\n', "mqtt.ca_file is not a secret field"),
])
def test_bad_file_changes_nothing_and_explains(dirs, edit, needle):
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD)
    firstboot(boot, root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    bad = edit(GOOD)
    (boot / "ronda.toml").write_text(bad)
    states: list[str] = []
    with pytest.raises(ProvisionError) as info:
        firstboot(boot, root, status=states.append)
    assert any(needle in p for p in info.value.problems), info.value.problems
    assert states == ["applying", "error"]
    assert needle in (boot / "ronda-error.txt").read_text()
    state = root / "var/lib/ronda/firstboot.json"  # the refusal is recorded for the daemon
    recorded = json.loads(state.read_text())
    assert any(needle in p for p in recorded.pop("rejected")["problems"])
    assert recorded == json.loads(before.pop(state))
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and p != state}
    assert after == before
    assert (boot / "ronda.toml").read_text() == bad  # the technician's file is left alone


def test_empty_secret_without_a_stored_one_is_refused(dirs):
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD.replace('"mqtt.password" = "mqtt-s3cret"',
                                                  '"mqtt.password" = ""'))
    with pytest.raises(ProvisionError, match=r"secrets\.mqtt\.password: empty"):
        firstboot(boot, root)
    assert not (root / "etc/ronda").exists()


def test_cli_exit_codes_and_error_file_removed_after_fix(dirs, capsys):
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD.replace('id = "mgl-kemirirejo-rw05"', "id = 5"))
    assert main(["firstboot", "--boot", str(boot), "--root", str(root)]) == config.EX_CONFIG
    assert "node.id" in capsys.readouterr().err
    assert (boot / "ronda-error.txt").exists()
    (boot / "ronda.toml").write_text(GOOD)
    assert main(["firstboot", "--boot", str(boot), "--root", str(root)]) == 0
    assert not (boot / "ronda-error.txt").exists()


def test_format_only_when_asked_and_only_once(dirs, tmp_path):
    boot, root = dirs
    disk = tmp_path / "ssd.img"
    with disk.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)
    text = GOOD.replace('label = "RONDA-REC"', f'label = "RONDA-REC"\nformat_device = "{disk}"')
    (boot / "ronda.toml").write_text(text)
    result = firstboot(boot, root)
    assert any("formatted" in c for c in result.changes)
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(disk)],
                           capture_output=True, text=True).stdout.strip()
    assert label == "RONDA-REC"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop,ro", str(disk), str(mnt)], check=True)
    try:
        rec = (mnt / "recordings").stat()
        assert (rec.st_uid, rec.st_gid, stat.S_IMODE(rec.st_mode)) == (990, 990, 0o750)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    fat = config.tomllib.loads((boot / "ronda.toml").read_text())
    assert fat["provision"]["storage"]["format_device"] == ""
    # mark the fresh filesystem: a re-apply must not format again
    subprocess.run(["tune2fs", "-L", "KEEP-ME", str(disk)], check=True, capture_output=True)
    firstboot(boot, root, force=True)
    label = subprocess.run(["blkid", "-o", "value", "-s", "LABEL", str(disk)],
                           capture_output=True, text=True).stdout.strip()
    assert label == "KEEP-ME"


def test_strip_secrets_handles_multiline_values():
    text = ('[secrets]\n"mqtt.key" = """-----BEGIN KEY-----\nabc\n-----END KEY-----"""\n'
            '"mqtt.password" = \'x\'\n[node]\nid = "a"\n')
    out = strip_secrets(text)
    assert "abc" not in out and "'x'" not in out
    assert config.tomllib.loads(out) == {"secrets": {"mqtt.key": "", "mqtt.password": ""},
                                         "node": {"id": "a"}}


def test_missing_boot_file_is_nothing_to_do(dirs):
    boot, root = dirs
    assert not firstboot(boot, root).applied
    assert not os.listdir(boot)


def test_led_command_hears_each_state(dirs, tmp_path):
    boot, root = dirs
    states = tmp_path / "led.log"
    (boot / "ronda.toml").write_text(GOOD.replace('id = "mgl-kemirirejo-rw05"', 'id = "X"'))
    args = ["firstboot", "--boot", str(boot), "--root", str(root),
            "--led-command", f"sh -c 'echo $0 >> {states}' {{state}}"]  # no shell of its own
    assert main(args) == config.EX_CONFIG
    (boot / "ronda.toml").write_text(GOOD)
    assert main(args) == 0
    assert states.read_text().split() == ["applying", "error", "applying", "ok"]


def test_wifi_country_goes_on_the_kernel_command_line(dirs):
    boot, root = dirs
    (boot / "cmdline.txt").write_text("console=serial0,115200 root=PARTUUID=x rootwait "
                                      "cfg80211.ieee80211_regdom=GB\n")
    (boot / "ronda.toml").write_text(GOOD)
    firstboot(boot, root)
    words = (boot / "cmdline.txt").read_text().split()
    assert words[-1] == "cfg80211.ieee80211_regdom=ID" and "rootwait" in words
    assert sum(w.startswith("cfg80211") for w in words) == 1


def test_error_file_never_shows_a_password_in_a_url(dirs):
    boot, root = dirs
    bad = GOOD.replace('url = "rtsp://10.0.0.11/stream1"',
                       'url = "ftp://admin:rahasia@10.0.0.11/stream1"')
    (boot / "ronda.toml").write_text(bad)
    with pytest.raises(ProvisionError):
        firstboot(boot, root)
    report = (boot / "ronda-error.txt").read_text()
    assert "cameras[0]" in report and "rahasia" not in report


def test_installed_config_keeps_the_technicians_comments(dirs):
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD.replace(
        'name = "gang-utara"', 'name = "gang-utara"  # pole by the mosque'))
    firstboot(boot, root)
    installed = (root / "etc/ronda/ronda.toml").read_text()
    assert "# pole by the mosque" in installed and "# Pos Ronda RW 05" in installed
    data = config.tomllib.loads(installed)
    assert "secrets" not in data and data["cameras"][0]["name"] == "gang-utara"
    assert "s3cret" not in installed


def test_check_only_validates(dirs, capsys):
    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD)
    before = sorted(p.name for p in root.rglob("*"))
    assert main(["firstboot", "--check", "--boot", str(boot), "--root", str(root)]) == 0
    assert "valid (node mgl-kemirirejo-rw05)" in capsys.readouterr().out
    assert sorted(p.name for p in root.rglob("*")) == before
    assert (boot / "ronda.toml").read_text() == GOOD  # secrets not stripped by a check
    (boot / "ronda.toml").write_text(GOOD.replace("[node]", "[nod]"))
    assert main(["firstboot", "--check", "--boot", str(boot)]) == config.EX_CONFIG


def test_reverting_a_refused_edit_clears_the_refusal(dirs):
    """Back to the file that is installed: nothing to apply, and nothing rejected any more
    (the daemon's LED and health, doctor and ronda-error.txt must stop saying so)."""
    from firmware.fallback import boot_rejection

    boot, root = dirs
    (boot / "ronda.toml").write_text(GOOD)
    firstboot(boot, root)
    applied = (boot / "ronda.toml").read_text()
    (boot / "ronda.toml").write_text(applied.replace("[node]", "[node"))
    with pytest.raises(ProvisionError):
        firstboot(boot, root)
    assert boot_rejection(root / "var/lib/ronda") is not None
    (boot / "ronda.toml").write_text(applied)
    assert firstboot(boot, root).reason == "unchanged since last applied"
    assert boot_rejection(root / "var/lib/ronda") is None
    assert not (boot / "ronda-error.txt").exists()
