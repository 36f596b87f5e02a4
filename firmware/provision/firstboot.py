"""`ronda firstboot`: apply the ronda.toml a technician put on the boot partition.

The FAT boot partition is the one place anyone can edit from a laptop. On every boot
(while the file exists) this module:

1. validates the file with `firmware.config` plus the `[provision]`/`[secrets]` tables;
2. if anything is wrong, writes every problem to BOOT/ronda-error.txt, signals `error`
   through the status hook and changes NOTHING (the previous config keeps running);
3. else moves inline secrets into 0600 files under /etc/ronda/secrets, installs the config
   as /etc/ronda/ronda.toml (0600, owned by the `ronda` user), sets hostname, timezone,
   Wi-Fi and the recordings SSD's fstab line (formatting it only when told), and blanks the
   secrets (and `format_device`) on the FAT copy so that they do not stay readable there.

A file that has already been applied (same SHA-256) is skipped, so this is cheap on
ordinary boots and a technician can re-edit the file to reconfigure the node.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from firmware import config
from firmware.provision import tomlwrite
from firmware.provision.settings import ProvisionSettings, check_secret_keys

log = logging.getLogger(__name__)

CONFIG_NAME = "ronda.toml"
ERROR_NAME = "ronda-error.txt"
SECRETS_DIR = Path("/etc/ronda/secrets")
INSTALLED = Path("/etc/ronda/ronda.toml")
STATE_FILE = Path("/var/lib/ronda/firstboot.json")
FSTAB_MARK = "# ronda-recordings"
NM_CONNECTION = Path("/etc/NetworkManager/system-connections/ronda-wifi.nmconnection")

StatusHook = Callable[[str], None]


class ProvisionError(Exception):
    """The boot file was not applied; `problems` lists why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class Result:
    """What one run did."""

    applied: bool
    reason: str
    changes: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    data: dict[str, Any]
    provision: ProvisionSettings
    secrets: dict[str, str]  # key -> new value ("" = keep the stored one)
    node_id: str


def under(root: Path, path: Path | str) -> Path:
    """`path` (absolute, as the node sees it) inside the tree at `root`."""
    return root / str(path).lstrip("/")


def secret_file(key: str) -> Path:
    """Where the node keeps the secret called `key` (e.g. 'mqtt.password')."""
    return SECRETS_DIR / key


# ---- planning: everything that can fail happens before anything is written -----------


def _plan(text: str, source: str, root: Path) -> _Plan:
    try:
        data = config.tomllib.loads(text)
    except config.tomllib.TOMLDecodeError as exc:
        raise ProvisionError([f"(syntax): not valid TOML: {exc}"]) from None
    problems: list[str] = []
    secrets = data.pop("secrets", {})
    if not isinstance(secrets, dict):
        raise ProvisionError(["secrets: must be a table: [secrets]"])
    problems += check_secret_keys(secrets)
    keeps_provision = "provision" in config.Config.model_fields
    raw = data.get("provision", {}) if keeps_provision else data.pop("provision", {})
    try:
        provision = ProvisionSettings.model_validate(raw)
    except ValidationError as exc:
        provision = ProvisionSettings()
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"provision.{where}: {err['msg']} (got: {err.get('input')!r})")
    if problems:
        raise ProvisionError(problems)

    wanted: list[tuple[str, str]] = []  # (secret key, dotted config field)
    for key, value in secrets.items():
        if not value and not under(root, secret_file(key)).exists():
            problems.append(f"secrets.{key}: empty and no stored secret on the node: "
                            f"write the value between the quotes")
        if key == "network.wifi_psk":
            continue
        dotted = _point_field_at(data, key, str(secret_file(key)), problems)
        if dotted:
            wanted.append((key, dotted))
    if problems:
        raise ProvisionError(problems)

    cfg = _validate(data, source, root, secrets)
    marked = {dotted for dotted, _ in config.secret_paths(cfg)}
    for key, dotted in wanted:
        if dotted not in marked:
            problems.append(f"secrets.{key}: {dotted} is not a secret field of the config")
    if provision.network.wifi_ssid and "network.wifi_psk" not in secrets:
        problems.append("provision.network.wifi_ssid: set, but secrets.\"network.wifi_psk\" "
                        "is missing (use \"\" only for an open network: not allowed)")
    if problems:
        raise ProvisionError(problems)
    return _Plan(data, provision, dict(secrets), cfg.node.id)


def _point_field_at(data: dict[str, Any], key: str, path: str,
                    problems: list[str]) -> str | None:
    """Set the `<field>_file` the secret `key` stands for; return its dotted config path."""
    parts = key.split(".")
    if parts[0] == "cameras":
        _, name, fld = parts
        cams = data.get("cameras", [])
        for i, cam in enumerate(cams if isinstance(cams, list) else []):
            if isinstance(cam, dict) and cam.get("name") == name:
                cam[f"{fld}_file"] = path
                return f"cameras[{i}].{fld}_file"
        problems.append(f"secrets.{key}: no [[cameras]] with name = {name!r}")
        return None
    section, fld = parts
    table = data.setdefault(section, {})
    if not isinstance(table, dict):
        problems.append(f"secrets.{key}: [{section}] is not a table")
        return None
    table[f"{fld}_file"] = path
    return f"{section}.{fld}_file"


def _validate(data: dict[str, Any], source: str, root: Path,
              secrets: dict[str, str]) -> config.Config:
    """Validate as the node will see it: secret files mapped into `root` or a scratch dir."""
    probe = copy.deepcopy(data)
    with tempfile.TemporaryDirectory(prefix="ronda-firstboot-") as scratch:
        staged = {}
        for key, value in secrets.items():
            if value:
                staged[str(secret_file(key))] = Path(scratch) / key
                staged[str(secret_file(key))].write_text(value + "\n")
                os.chmod(staged[str(secret_file(key))], 0o600)

        def remap(node: Any) -> None:
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in list(items):
                if isinstance(v, (dict, list)):
                    remap(v)
                elif isinstance(k, str) and k.endswith("_file") and isinstance(v, str):
                    if v in staged:
                        node[k] = str(staged[v])
                    elif v.startswith("/") and root != Path("/"):
                        node[k] = str(under(root, v))

        remap(probe)
        try:
            return config.parse(probe, source)
        except config.ConfigError as exc:
            raise ProvisionError([str(p) for p in exc.problems]) from None


# ---- applying ---------------------------------------------------------------------------


def _owner(root: Path, user: str = "ronda") -> tuple[int, int] | None:
    """uid/gid of `user` in ROOT/etc/passwd (not the host's), or None."""
    with contextlib.suppress(OSError):
        for line in under(root, "/etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 3 and parts[0] == user:
                return int(parts[2]), int(parts[3])
    return None


def write_private(path: Path, text: str, owner: tuple[int, int] | None = None,
                  mode: int = 0o600) -> None:
    """Write `text` atomically with `mode` (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _apply_hostname(root: Path, name: str) -> list[str]:
    etc_hostname = under(root, "/etc/hostname")
    etc_hostname.parent.mkdir(parents=True, exist_ok=True)
    etc_hostname.write_text(name + "\n")
    hosts = under(root, "/etc/hosts")
    lines = hosts.read_text().splitlines() if hosts.exists() else [
        "127.0.0.1\tlocalhost", "::1\t\tlocalhost ip6-localhost ip6-loopback"]
    lines = [ln for ln in lines if not ln.startswith("127.0.1.1")]
    lines.insert(1, f"127.0.1.1\t{name}")
    hosts.write_text("\n".join(lines) + "\n")
    if root == Path("/") and booted_here():
        with contextlib.suppress(OSError):
            subprocess.run(["hostname", name], check=False, timeout=5)
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


def _apply_timezone(root: Path, zone: str) -> list[str]:
    if not under(root, f"/usr/share/zoneinfo/{zone}").exists():
        log.warning("timezone %s: no zoneinfo in the root (tzdata missing?), left alone", zone)
        return []
    localtime = under(root, "/etc/localtime")
    with contextlib.suppress(FileNotFoundError):
        localtime.unlink()
    localtime.symlink_to(f"/usr/share/zoneinfo/{zone}")
    under(root, "/etc/timezone").write_text(zone + "\n")
    return [f"timezone {zone}"]


def fstab_line(storage: Any) -> str:
    """The fstab line of the recordings SSD: by UUID or label, nofail so a dead SSD does
    not stop the boot, and a short device timeout."""
    source = f"UUID={storage.uuid}" if storage.uuid else f"LABEL={storage.label}"
    options = ",".join(dict.fromkeys(
        [*storage.options.split(","), "nofail", "x-systemd.device-timeout=15s"]))
    return f"{source}\t{storage.mountpoint}\t{storage.fstype}\t{options}\t0\t2\t{FSTAB_MARK}"


def _apply_storage(root: Path, storage: Any, run: Callable[..., Any]) -> list[str]:
    changes = []
    if storage.format_device:
        device = storage.format_device
        mounts = Path("/proc/mounts").read_text() if Path("/proc/mounts").exists() else ""
        if any(line.split()[0] == device for line in mounts.splitlines() if line):
            raise ProvisionError([f"provision.storage.format_device: {device} is mounted; "
                                  "refusing to format it"])
        mkfs = {"ext4": ["mkfs.ext4", "-F", "-q", "-m", "1", "-L", storage.label,
                         "-E", "lazy_itable_init=1,lazy_journal_init=1"],
                "f2fs": ["mkfs.f2fs", "-f", "-l", storage.label],
                "xfs": ["mkfs.xfs", "-f", "-L", storage.label]}[storage.fstype]
        proc = run([*mkfs, device], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise ProvisionError([f"provision.storage.format_device: {' '.join(mkfs)} {device} "
                                  f"failed: {(proc.stderr or '').strip()[-300:]}"])
        changes.append(f"formatted {device} as {storage.fstype} label {storage.label}")
        changes += _prepare_new_disk(root, device, storage.fstype, run)
    fstab = under(root, "/etc/fstab")
    lines = fstab.read_text().splitlines() if fstab.exists() else []
    lines = [ln for ln in lines if not ln.rstrip().endswith(FSTAB_MARK)]
    lines.append(fstab_line(storage))
    fstab.parent.mkdir(parents=True, exist_ok=True)
    fstab.write_text("\n".join(lines) + "\n")
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
    return changes


def _prepare_new_disk(root: Path, device: str, fstype: str,
                      run: Callable[..., Any]) -> list[str]:
    """On a fresh filesystem: a `recordings` directory the ronda user may write."""
    owner = _owner(root) or (0, 0)
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


def _apply_wifi(root: Path, network: Any, psk: str) -> list[str]:
    if not network.wifi_ssid:
        return []
    conn = (
        "[connection]\nid=ronda-wifi\ntype=wifi\nautoconnect=true\n\n"
        f"[wifi]\nmode=infrastructure\nssid={network.wifi_ssid}\n"
        f"hidden={'true' if network.wifi_hidden else 'false'}\n\n"
        f"[wifi-security]\nkey-mgmt=wpa-psk\npsk={psk}\n\n"
        "[ipv4]\nmethod=auto\n\n[ipv6]\nmethod=auto\n"
    )
    write_private(under(root, NM_CONNECTION), conn)
    if under(root, "/etc/default").is_dir():
        under(root, "/etc/default/crda").write_text(f"REGDOMAIN={network.wifi_country}\n")
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
    cmdline.write_text(" ".join(new) + "\n")
    return [f"wifi country {country} (cmdline.txt)"]


_HEADER = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+\s*(#.*)?$")
_ASSIGN = re.compile(r"^(\s*)(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_.-]+)(\s*=\s*)(.*)$")


def strip_secrets(text: str) -> str:
    """The boot file with `[secrets]` values and `provision.storage.format_device` blanked,
    comments and layout kept."""
    out: list[str] = []
    table = ""
    skipping: str | None = None  # closing quote of a multi-line string being dropped
    for line in text.splitlines():
        if skipping:
            if skipping in line:
                skipping = None
            continue
        header = _HEADER.match(line)
        if header:
            table = header.group(1).strip()
            out.append(line)
            continue
        match = _ASSIGN.match(line)
        key = match.group(2).strip("\"'") if match else ""
        blank = match and ((table == "secrets") or
                           (table == "provision.storage" and key == "format_device"))
        if match and blank:
            value = match.group(4).strip()
            for quote in ('"""', "'''"):
                if value.startswith(quote) and value.count(quote) == 1:
                    skipping = quote
            was_set = value not in ('""', "''") and not value.startswith(('""  #', "''  #"))
            note = f"  # stored on the node {time.strftime('%Y-%m-%d')}" if was_set else ""
            if table != "secrets" and was_set:
                note = f"  # done {time.strftime('%Y-%m-%d')}: set again to format again"
            if was_set:
                out.append(f'{match.group(1)}{match.group(2)}{match.group(3)}""{note}')
            else:
                out.append(line)
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _still_secret(text: str) -> bool:
    try:
        data = config.tomllib.loads(text)
    except config.tomllib.TOMLDecodeError:
        return True
    storage = data.get("provision", {}).get("storage", {})
    return any(data.get("secrets", {}).values()) or bool(storage.get("format_device"))


def _strip_boot_copy(path: Path, text: str) -> str:
    stripped = strip_secrets(text)
    if _still_secret(stripped):  # unusual layout: rewrite the whole file, safely
        data = config.tomllib.loads(text)
        data["secrets"] = dict.fromkeys(data.get("secrets", {}), "")
        data.get("provision", {}).get("storage", {}).pop("format_device", None)
        stripped = ("# Rewritten by ronda firstboot: secrets are stored on the node.\n"
                    + tomlwrite.dumps(data))
    if stripped != text:
        tmp = path.with_name(path.name + ".new")
        tmp.write_text(stripped, encoding="utf-8")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    return stripped


def check(path: Path, root: Path = Path("/")) -> str:
    """Validate a boot-partition ronda.toml without applying anything; returns the node id.
    Raises ProvisionError. Secrets left empty count as stored only if they are in `root`."""
    return _plan(Path(path).read_text(encoding="utf-8", errors="replace"), str(path),
                 Path(root)).node_id


def firstboot(boot: Path, root: Path = Path("/"), *, status: StatusHook | None = None,
              run: Callable[..., Any] = subprocess.run, force: bool = False) -> Result:
    """Apply BOOT/ronda.toml to the system at ROOT. Raises ProvisionError (after writing
    BOOT/ronda-error.txt) when the file is not usable; nothing is changed then."""
    status = status or (lambda state: None)
    boot, root = Path(boot), Path(root)
    src = boot / CONFIG_NAME
    if not src.is_file():
        return Result(False, f"no {src}")
    text = src.read_text(encoding="utf-8", errors="replace")
    digest = hashlib.sha256(text.encode()).hexdigest()
    state_path = under(root, STATE_FILE)
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text())
        if (not force and state.get("sha256") == digest
                and under(root, INSTALLED).exists()):
            return Result(False, "unchanged since last applied")
    status("applying")
    try:
        plan = _plan(text, str(src), root)
        changes = _apply(plan, root, boot, run)
    except ProvisionError as exc:
        _write_error(boot, exc.problems)
        status("error")
        raise
    stripped = _strip_boot_copy(src, text)
    with contextlib.suppress(FileNotFoundError):
        (boot / ERROR_NAME).unlink()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps({
        "sha256": hashlib.sha256(stripped.encode()).hexdigest(),
        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "node": plan.node_id, "changes": changes}, indent=1) + "\n")
    status("ok")
    return Result(True, "applied", changes)


def _apply(plan: _Plan, root: Path, boot: Path, run: Callable[..., Any]) -> list[str]:
    owner = _owner(root)
    changes: list[str] = []
    if plan.provision.mount_storage:  # may format: first, so a failure changes nothing else
        changes += _apply_storage(root, plan.provision.storage, run)
    for key, value in plan.secrets.items():
        if value:
            secrets_dir = under(root, SECRETS_DIR)
            secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
            if owner:
                os.chown(secrets_dir, 0, owner[1])
            write_private(under(root, secret_file(key)), value + "\n", owner)
            changes.append(f"secret {key}")
    installed = under(root, INSTALLED)
    if installed.exists():
        write_private(installed.with_name("ronda.toml.prev"), installed.read_text(), owner)
    write_private(installed, "# Installed by ronda firstboot from the boot partition;\n"
                  "# edit /boot/firmware/ronda.toml instead and reboot.\n\n"
                  + tomlwrite.dumps(plan.data), owner)
    changes.append(f"config {INSTALLED}")
    changes += _apply_hostname(root, plan.provision.hostname or plan.node_id)
    changes += _apply_timezone(root, plan.provision.timezone)
    psk = plan.secrets.get("network.wifi_psk", "")
    if plan.provision.network.wifi_ssid and not psk:  # kept from a previous boot
        psk = config.read_secret(under(root, secret_file("network.wifi_psk"))) or ""
    changes += _apply_wifi(root, plan.provision.network, psk)
    if plan.provision.network.wifi_ssid:
        changes += set_wifi_country(boot, plan.provision.network.wifi_country)
    return changes


def _write_error(boot: Path, problems: list[str]) -> None:
    from drivers.cameras.base import mask_credentials  # the FAT file is world-readable

    text = (f"ronda firstboot {time.strftime('%Y-%m-%d %H:%M:%S')}: ronda.toml was NOT "
            "applied; the node keeps its previous settings.\nFix these lines and reboot:\n\n"
            + "".join(f"  {mask_credentials(p)}\n" for p in problems))
    with contextlib.suppress(OSError):
        (boot / ERROR_NAME).write_text(text, encoding="utf-8")
