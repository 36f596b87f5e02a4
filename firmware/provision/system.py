"""What first boot changes on the machine: files under a root tree (hostname, timezone,
fstab, Wi-Fi), the recordings disk. Every function takes the root so that a card mounted
elsewhere can be prepared too; live-system actions happen only on a booted system."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.provision.settings import ProvisionError
from support.files import atomic_write

log = logging.getLogger(__name__)

FSTAB_MARK = "# ronda-recordings"
NM_CONNECTION = Path("/etc/NetworkManager/system-connections/ronda-wifi.nmconnection")


def under(root: Path, path: Path | str) -> Path:
    """`path` (absolute, as the node sees it) inside the tree at `root`; a path with `..`
    could leave `root`, so it is refused."""
    if ".." in Path(str(path)).parts:
        raise ValueError(f"{path}: `..` is not allowed")
    return root / str(path).lstrip("/")


def owner_of(root: Path, user: str = "ronda") -> tuple[int, int] | None:
    """uid/gid of `user` in ROOT/etc/passwd (not the host's), or None."""
    with contextlib.suppress(OSError):
        for line in under(root, "/etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 3 and parts[0] == user:
                return int(parts[2]), int(parts[3])
    return None


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None,
                  mode: int = 0o600) -> None:
    """Write `text` atomically with `mode` (never briefly world-readable), then hand it to
    `owner` (uid, gid)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=mode)
    if owner is not None:
        os.chown(path, *owner)


def apply_hostname(root: Path, name: str) -> list[str]:
    """/etc/hostname and the 127.0.1.1 line of /etc/hosts; the live name when booted."""
    etc_hostname = under(root, "/etc/hostname")
    etc_hostname.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(etc_hostname, name + "\n")
    hosts = under(root, "/etc/hosts")
    lines = hosts.read_text().splitlines() if hosts.exists() else [
        "127.0.0.1\tlocalhost", "::1\t\tlocalhost ip6-localhost ip6-loopback"]
    lines = [ln for ln in lines if not ln.startswith("127.0.1.1")]
    lines.insert(1, f"127.0.1.1\t{name}")
    atomic_write(hosts, "\n".join(lines) + "\n")
    if root == Path("/") and booted_here():
        with contextlib.suppress(OSError):
            subprocess.run(["hostname", "--", name], check=False, timeout=5)
    return [f"hostname {name}"]


def booted_here() -> bool:
    """True on a running system booted with systemd, not in a chroot (where setting the
    live hostname would rename the build host)."""
    try:
        me, init = os.stat("/"), os.stat("/proc/1/root/")
    except OSError:
        return False
    return (me.st_dev, me.st_ino) == (init.st_dev, init.st_ino) and \
        Path("/run/systemd/system").is_dir()


def apply_timezone(root: Path, zone: str) -> list[str]:
    """/etc/localtime and /etc/timezone, if the root has that zone (tzdata)."""
    if not under(root, f"/usr/share/zoneinfo/{zone}").exists():
        log.warning("timezone %s: no zoneinfo in the root (tzdata missing?), left alone", zone)
        return []
    localtime = under(root, "/etc/localtime")
    with contextlib.suppress(FileNotFoundError):
        localtime.unlink()
    localtime.symlink_to(f"/usr/share/zoneinfo/{zone}")
    atomic_write(under(root, "/etc/timezone"), zone + "\n")
    return [f"timezone {zone}"]


def fstab_line(storage: Any) -> str:
    """The fstab line of the recordings SSD: by UUID or label, nofail so a dead SSD does
    not stop the boot, and a short device timeout."""
    source = f"UUID={storage.uuid}" if storage.uuid else f"LABEL={storage.label}"
    options = ",".join(dict.fromkeys(
        [*storage.options.split(","), "nofail", "x-systemd.device-timeout=15s"]))
    return f"{source}\t{storage.mountpoint}\t{storage.fstype}\t{options}\t0\t2\t{FSTAB_MARK}"


PROC_MOUNTS, PROC_SWAPS = Path("/proc/mounts"), Path("/proc/swaps")
SYS_BLOCK = Path("/sys/class/block")


def mounted_on(device: str, mounts: str, sys_block: Path = SYS_BLOCK) -> str:
    """'<source> on <where>' for a filesystem or swap (lines of /proc/mounts, /proc/swaps)
    on `device` or on a partition of it (the whole SD card holds the root), else ''."""
    name = Path(os.path.realpath(device)).name
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 2 or not fields[0].startswith("/dev/"):
            continue
        source = Path(os.path.realpath(fields[0])).name
        if source == name or (sys_block / source).resolve().parent.name == name:
            return f"{fields[0]} on {fields[1]}"
    return ""


def apply_storage(root: Path, storage: Any, run: Callable[..., Any]) -> list[str]:
    """Format the SSD if told to, write its fstab line, create the mount point."""
    changes = []
    if storage.format_device:
        device = storage.format_device
        mounts = "".join(p.read_text() for p in (PROC_MOUNTS, PROC_SWAPS) if p.exists())
        busy = mounted_on(device, mounts, SYS_BLOCK)
        if busy:
            raise ProvisionError([f"provision.storage.format_device: {device} holds {busy}; "
                                  "refusing to format it (is it the SD card or boot disk?)"])
        mkfs = {"ext4": ["mkfs.ext4", "-F", "-q", "-m", "1", "-L", storage.label,
                         "-E", "lazy_itable_init=1,lazy_journal_init=1"],
                "f2fs": ["mkfs.f2fs", "-f", "-l", storage.label],
                "xfs": ["mkfs.xfs", "-f", "-L", storage.label]}[storage.fstype]
        proc = run([*mkfs, device], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise ProvisionError([f"provision.storage.format_device: {' '.join(mkfs)} {device} "
                                  f"failed: {(proc.stderr or '').strip()[-300:]}"])
        changes.append(f"formatted {device} as {storage.fstype} label {storage.label}")
        changes += prepare_new_disk(root, device, storage.fstype, run)
    fstab = under(root, "/etc/fstab")
    lines = fstab.read_text().splitlines() if fstab.exists() else []
    lines = [ln for ln in lines if not ln.rstrip().endswith(FSTAB_MARK)]
    lines.append(fstab_line(storage))
    fstab.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(fstab, "\n".join(lines) + "\n")
    mountpoint = under(root, str(storage.mountpoint))
    mountpoint.mkdir(parents=True, exist_ok=True)
    changes.append(f"fstab: {storage.mountpoint} from "
                   f"{'UUID=' + storage.uuid if storage.uuid else 'LABEL=' + storage.label}")
    if root == Path("/") and not os.path.ismount(mountpoint):
        # An immutable, empty mount point: with the SSD missing nothing can be written
        # there (onto the SD card); mounting over it still works.
        proc = run(["chattr", "+i", str(mountpoint)], capture_output=True, text=True,
                   timeout=30)
        if proc.returncode == 0:
            changes.append(f"{storage.mountpoint} immutable while unmounted")
        changes += mount_now(mountpoint, run)
    return changes


def mount_now(mountpoint: Path, run: Callable[..., Any]) -> list[str]:
    """Mount the SSD during this first boot: systemd read fstab before its line existed, so
    without this the node would record nothing (the mount point is immutable) until the
    next reboot. A missing SSD is not an error here (`nofail`): doctor and health say so."""
    run(["systemctl", "daemon-reload"], capture_output=True, text=True, timeout=60)
    proc = run(["mount", str(mountpoint)], capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return [f"mounted {mountpoint}"]
    reason = (proc.stderr or "").strip().splitlines()[-1:] or ["mount failed"]
    return [f"{mountpoint} not mounted now ({reason[0]}): recordings wait for the SSD"]


def prepare_new_disk(root: Path, device: str, fstype: str,
                      run: Callable[..., Any]) -> list[str]:
    """On a fresh filesystem: a `recordings` directory the ronda user may write."""
    owner = owner_of(root) or (0, 0)
    with tempfile.TemporaryDirectory(prefix="ronda-ssd-") as where:
        proc = run(["mount", "-t", fstype, device, where], capture_output=True, text=True,
                   timeout=60)
        if proc.returncode != 0:
            log.warning("could not mount the new filesystem to prepare it: %s", proc.stderr)
            return []
        try:
            rec = Path(where) / "recordings"
            rec.mkdir(mode=0o750, exist_ok=True)
            os.chown(rec, *owner)
        finally:
            run(["umount", where], capture_output=True, timeout=60)
    return ["recordings/ created on the new filesystem, owned by ronda"]


def keyfile_value(value: str) -> str:
    """`value` as a GKeyFile string (NetworkManager's keyfile): a backslash starts an escape
    there and leading blanks are dropped, so both are escaped. (Newlines and other control
    characters never get here: the boot file's checks refuse them.)"""
    escaped = value.replace("\\", "\\\\")
    return "\\s" + escaped[1:] if escaped.startswith(" ") else escaped


def apply_wifi(root: Path, network: Any, psk: str) -> list[str]:
    """A NetworkManager keyfile (0600) for the configured network."""
    if not network.wifi_ssid:
        return []
    conn = (
        "[connection]\nid=ronda-wifi\ntype=wifi\nautoconnect=true\n\n"
        f"[wifi]\nmode=infrastructure\nssid={keyfile_value(network.wifi_ssid)}\n"
        f"hidden={'true' if network.wifi_hidden else 'false'}\n\n"
        f"[wifi-security]\nkey-mgmt=wpa-psk\npsk={keyfile_value(psk)}\n\n"
        "[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n"
    )
    write_private(under(root, NM_CONNECTION), conn)
    if under(root, "/etc/default").is_dir():
        atomic_write(under(root, "/etc/default/crda"), f"REGDOMAIN={network.wifi_country}\n")
    if root == Path("/") and booted_here():  # Raspberry Pi OS keeps Wi-Fi blocked until set
        with contextlib.suppress(OSError):
            subprocess.run(["rfkill", "unblock", "wifi"], check=False, timeout=10)
    return [f"wifi {network.wifi_ssid}"]


def set_wifi_country(boot: Path, country: str) -> list[str]:
    """The regulatory domain on the kernel command line (BOOT/cmdline.txt), as
    raspi-config does on Bookworm; nothing when the boot partition has no cmdline.txt."""
    cmdline = boot / "cmdline.txt"
    if not cmdline.is_file():
        return []
    words = cmdline.read_text().split()
    new = [w for w in words if not w.startswith("cfg80211.ieee80211_regdom=")]
    new.append(f"cfg80211.ieee80211_regdom={country}")
    if new == words:
        return []
    atomic_write(cmdline, " ".join(new) + "\n")
    return [f"wifi country {country} (cmdline.txt)"]
