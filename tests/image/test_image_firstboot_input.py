"""First boot cannot be used to break the system: every value from the FAT boot file is
checked before it reaches a system file, a command line or a shell."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from firmware.provision.firstboot import ProvisionError, firstboot

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
[node]
id = "rw05"

[mqtt]
enabled = false

[provision.network]
wifi_ssid = "RW05-POS"

[provision.storage]
label = "RONDA-REC"

[secrets]
"network.wifi_psk" = "wifi-s3cret"
"""


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    boot, root = tmp_path / "boot", tmp_path / "root"
    boot.mkdir()
    (root / "etc").mkdir(parents=True)
    return boot, root


def refused(boot: Path, root: Path, text: str) -> list[str]:
    (boot / "ronda.toml").write_text(text)
    with pytest.raises(ProvisionError) as info:
        firstboot(boot, root)
    assert not (root / "etc/ronda/ronda.toml").exists()
    assert not (root / "etc/fstab").exists()
    assert not list(root.rglob("*.nmconnection"))
    return info.value.problems


@pytest.mark.parametrize(("edit", "field"), [
    # a newline in the Wi-Fi name would add a section to the NetworkManager keyfile
    (lambda t: t.replace('"RW05-POS"', '"R\\n[ipv4]\\nmethod=x"'),  # fits in 32 chars
     "provision.network.wifi_ssid"),
    (lambda t: t.replace('"wifi-s3cret"', '"s3cret-long\\n[ipv4]"'), "secrets.network.wifi_psk"),
    (lambda t: t.replace('"wifi-s3cret"', '"short"'), "secrets.network.wifi_psk"),
    # a newline or a blank in fstab fields adds a line or fields to /etc/fstab
    (lambda t: t + '\n[provision.storage.x]\n', "provision.storage.x"),
    (lambda t: t.replace('label = "RONDA-REC"',
                         'label = "RONDA-REC"\noptions = "noatime\\n/dev/sdb / ext4 defaults"'),
     "provision.storage.options"),
    (lambda t: t.replace('label = "RONDA-REC"', 'label = "A B"'), "provision.storage.label"),
    (lambda t: t.replace('label = "RONDA-REC"', 'uuid = "1234\\nLABEL=x"'),
     "provision.storage.uuid"),
    # the mount point must stay inside --root
    (lambda t: t.replace('label = "RONDA-REC"', 'mountpoint = "/../../escaped"'),
     "provision.storage.mountpoint"),
    (lambda t: t.replace('label = "RONDA-REC"', 'mountpoint = "/srv/../.."'),
     "provision.storage.mountpoint"),
    # ... and never cover a system directory (fstab would mount the SSD over /etc at boot,
    # and an unmounted mount point is made immutable)
    (lambda t: t.replace('label = "RONDA-REC"', 'mountpoint = "/etc"'),
     "provision.storage.mountpoint"),
    (lambda t: t.replace('label = "RONDA-REC"', 'mountpoint = "/var"'),
     "provision.storage.mountpoint"),
    (lambda t: t.replace('label = "RONDA-REC"', 'mountpoint = "/usr/local/rekaman"'),
     "provision.storage.mountpoint"),
    # node.id reaches `hostname` as an argument: never an option
    (lambda t: t.replace('id = "rw05"', 'id = "-b"'), "node.id"),
    (lambda t: t.replace('id = "rw05"', 'id = "--file"'), "node.id"),
    # a camera is a stream, not a file on the node
    (lambda t: t + '\n[[cameras]]\nname = "c"\nurl = "file:///etc/shadow"\n', "cameras[0].url"),
    (lambda t: t + '\n[[cameras]]\nname = "c"\nurl = "rtsp://10.0.0.9/1"\n'
                   'substream_url = "file:///etc/shadow"\n', "cameras[0].substream_url"),
    (lambda t: t + '\n[[cameras]]\nname = "c"\nkind = "usb"\ndevice = "/etc/shadow"\n',
     "cameras[0].device"),
    (lambda t: t.replace('label = "RONDA-REC"', 'format_device = "/dev/../no-such-ronda-disk"'),
     "provision.storage.format_device"),
])
def test_hostile_values_are_refused_before_any_system_file(dirs, edit, field):
    boot, root = dirs
    problems = refused(boot, root, edit(BASE))
    assert any(p.startswith(field) for p in problems), problems
    assert field in (boot / "ronda-error.txt").read_text()


def test_the_escape_no_longer_writes_outside_root(dirs, tmp_path):
    boot, root = dirs
    refused(boot, root, BASE.replace('label = "RONDA-REC"', 'mountpoint = "/../../escaped"'))
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "escaped").exists()


def test_a_good_file_still_applies(dirs):
    boot, root = dirs
    (boot / "ronda.toml").write_text(BASE)
    assert firstboot(boot, root).applied
    conn = next(root.rglob("ronda-wifi.nmconnection")).read_text()
    assert "ssid=RW05-POS\n" in conn and conn.count("[wifi-security]") == 1


def test_notepads_ronda_toml_txt_is_found_and_renamed(dirs):
    boot, root = dirs
    (boot / "ronda.toml.txt").write_text(BASE)
    result = firstboot(boot, root)
    assert result.applied and "renamed ronda.toml.txt to ronda.toml" in result.changes
    assert (boot / "ronda.toml").exists() and not (boot / "ronda.toml.txt").exists()


def test_another_misnamed_file_is_reported_not_skipped(dirs):
    boot, root = dirs
    (boot / "ronda (1).toml").write_text(BASE)
    with pytest.raises(ProvisionError):
        firstboot(boot, root)
    assert "must be called exactly ronda.toml" in (boot / "ronda-error.txt").read_text()


def test_led_command_runs_without_a_shell(dirs, tmp_path):
    boot, root = dirs
    (boot / "ronda.toml").write_text(BASE)
    marker = tmp_path / "pwned"
    log = tmp_path / "states"
    cmd = f"sh -c 'echo $0 >> {log}' {{state}} ; touch {marker}"
    proc = subprocess.run([sys.executable, "-m", "firmware", "firstboot", "--boot", str(boot),
                           "--root", str(root), "--led-command", cmd],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()  # `; touch` is an argument, not a second command
    assert log.read_text().split() == ["applying", "ok"]


def test_format_device_never_the_disk_that_holds_a_mounted_partition(tmp_path, monkeypatch):
    """`format_device = "/dev/mmcblk0"` (the whole SD card, root on mmcblk0p2) or the
    NVMe a Pi 5 boots from: /proc/mounts lists only the partition, yet mkfs on the disk
    wipes the running system."""
    from firmware.provision import system
    from firmware.provision.settings import ProvisionError, StorageSettings

    sys_block = tmp_path / "sys/class/block"
    devices = tmp_path / "sys/devices/platform/mmc0/block/mmcblk0"
    for part in ("mmcblk0p1", "mmcblk0p2"):
        (devices / part).mkdir(parents=True)
    sys_block.mkdir(parents=True)
    for name, target in (("mmcblk0", devices), ("mmcblk0p1", devices / "mmcblk0p1"),
                         ("mmcblk0p2", devices / "mmcblk0p2")):
        (sys_block / name).symlink_to(target)
    mounts = ("/dev/mmcblk0p2 / ext4 rw,noatime 0 0\n"
              "/dev/mmcblk0p1 /boot/firmware vfat rw 0 0\nproc /proc proc rw 0 0\n")
    (tmp_path / "mounts").write_text(mounts)
    monkeypatch.setattr(system, "PROC_MOUNTS", tmp_path / "mounts", raising=False)
    monkeypatch.setattr(system, "SYS_BLOCK", sys_block, raising=False)
    ran: list[list[str]] = []
    with pytest.raises(ProvisionError, match="mmcblk0p2 on /"):
        system.apply_storage(tmp_path / "root", StorageSettings(format_device="/dev/mmcblk0"),
                             lambda args, **kw: ran.append(args))
    assert ran == []  # no mkfs
    assert system.mounted_on("/dev/mmcblk0p1", mounts, sys_block) == \
        "/dev/mmcblk0p1 on /boot/firmware"
    assert system.mounted_on("/dev/sda1", mounts, sys_block) == ""


def _glib_keyfile_string(path: Path, group: str, key: str) -> str | None:
    """The value as NetworkManager reads it: GLib's own GKeyFile parser (libglib-2.0)."""
    import ctypes
    import ctypes.util

    glib = ctypes.CDLL(ctypes.util.find_library("glib-2.0") or "libglib-2.0.so.0")
    glib.g_key_file_new.restype = ctypes.c_void_p
    glib.g_key_file_load_from_file.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                               ctypes.c_void_p]
    glib.g_key_file_get_string.restype = ctypes.c_void_p
    glib.g_key_file_get_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p,
                                           ctypes.c_void_p]
    glib.g_key_file_free.argtypes = [ctypes.c_void_p]
    glib.g_free.argtypes = [ctypes.c_void_p]
    kf = glib.g_key_file_new()
    try:
        assert glib.g_key_file_load_from_file(kf, str(path).encode(), 0, None)
        value = glib.g_key_file_get_string(kf, group.encode(), key.encode(), None)
        if not value:
            return None
        text = ctypes.string_at(value).decode()
        glib.g_free(value)
        return text
    finally:
        glib.g_key_file_free(kf)


@pytest.mark.parametrize(("ssid", "psk"), [
    ("RW05\\POS", "Pos\\n05\\aman"),  # a backslash: GKeyFile's escape character
    ("RW05 POS", " spasi di depan"),  # leading blanks: GKeyFile drops them unescaped
])
def test_wifi_keyfile_values_reach_networkmanager_unchanged(tmp_path, ssid, psk):
    from types import SimpleNamespace

    from firmware.provision.system import NM_CONNECTION, apply_wifi, under

    root = tmp_path / "root"
    apply_wifi(root, SimpleNamespace(wifi_ssid=ssid, wifi_hidden=False, wifi_country="ID"),
               psk)
    keyfile = under(root, NM_CONNECTION)
    assert _glib_keyfile_string(keyfile, "wifi-security", "psk") == psk
    assert _glib_keyfile_string(keyfile, "wifi", "ssid") == ssid
