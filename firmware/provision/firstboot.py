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
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from pydantic import ValidationError

from firmware import config
from firmware.provision.bootfile import strip_boot_copy, strip_secrets
from firmware.provision.settings import (
    ProvisionError,
    ProvisionSettings,
    check_secret_keys,
    check_streams,
)
from firmware.provision.system import (
    apply_hostname,
    apply_storage,
    apply_timezone,
    apply_wifi,
    booted_here,
    owner_of,
    set_wifi_country,
    under,
    write_private,
)
from support.files import atomic_write

__all__ = ["ProvisionError", "Result", "booted_here", "check", "firstboot", "secret_file",
           "strip_secrets"]

log = logging.getLogger(__name__)

CONFIG_NAME = "ronda.toml"
ERROR_NAME = "ronda-error.txt"
SECRETS_DIR = Path("/etc/ronda/secrets")
INSTALLED = Path("/etc/ronda/ronda.toml")
STATE_FILE = Path("/var/lib/ronda/firstboot.json")

StatusHook = Callable[[str], None]


@dataclass
class Result:
    """What one run did."""

    applied: bool
    reason: str
    changes: list[str] = field(default_factory=list)


@dataclass
class _Plan:
    data: Any  # the tomlkit document: installed with the technician's comments
    provision: ProvisionSettings
    secrets: dict[str, str]  # key -> new value ("" = keep the stored one)
    node_id: str


def secret_file(key: str) -> Path:
    """Where the node keeps the secret called `key` (e.g. 'mqtt.password')."""
    return SECRETS_DIR / key


# ---- planning: everything that can fail happens before anything is written -----------


def _plan(text: str, source: str, root: Path, empty_ok: bool = False) -> _Plan:
    try:
        config.tomllib.loads(text)  # its messages name the line and column
        data = tomlkit.parse(text)
    except (config.tomllib.TOMLDecodeError, tomlkit.exceptions.TOMLKitError) as exc:
        raise ProvisionError([f"(syntax): not valid TOML: {exc}"]) from None
    problems: list[str] = []
    secrets = data.pop("secrets", {})
    if not isinstance(secrets, dict):
        raise ProvisionError(["secrets: must be a table: [secrets]"])
    secrets = {k: v.unwrap() if hasattr(v, "unwrap") else v for k, v in secrets.items()}
    problems += check_secret_keys(secrets)
    problems += check_streams(data.unwrap())
    keeps_provision = "provision" in config.Config.model_fields
    raw = data.get("provision", {}) if keeps_provision else data.pop("provision", {})
    try:
        provision = ProvisionSettings.model_validate(
            raw.unwrap() if hasattr(raw, "unwrap") else raw)
    except ValidationError as exc:
        provision = ProvisionSettings()
        for err in exc.errors(include_url=False):
            where = ".".join(str(p) for p in err["loc"])
            problems.append(f"provision.{where}: {err['msg']} (got: {err.get('input')!r})")
    if problems:
        raise ProvisionError(problems)

    wanted: list[tuple[str, str]] = []  # (secret key, dotted config field)
    for key, value in secrets.items():
        if not value and not empty_ok and not under(root, secret_file(key)).exists():
            problems.append(f"secrets.{key}: empty and no stored secret on the node: "
                            f"write the value between the quotes")
        if key == "network.wifi_psk":
            continue
        dotted = _point_field_at(data, key, str(secret_file(key)), problems)
        if dotted:
            wanted.append((key, dotted))
    if problems:
        raise ProvisionError(problems)

    probe = {k: v or ("stored-on-the-node" if empty_ok and not under(root, secret_file(k)).exists()
                      else v) for k, v in secrets.items()}
    cfg = _validate(data, source, root, probe)
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
    if section not in data:
        data[section] = tomlkit.table()
    table = data[section]
    if not isinstance(table, dict):
        problems.append(f"secrets.{key}: [{section}] is not a table")
        return None
    table[f"{fld}_file"] = path
    return f"{section}.{fld}_file"


def _validate(data: dict[str, Any], source: str, root: Path,
              secrets: dict[str, str]) -> config.Config:
    """Validate as the node will see it: secret files mapped into `root` or a scratch dir."""
    probe = copy.deepcopy(data.unwrap() if hasattr(data, "unwrap") else data)
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


def check(path: Path, root: Path = Path("/"), empty_ok: bool = False) -> str:
    """Validate a boot-partition ronda.toml without applying anything; returns the node id.
    Raises ProvisionError. Secrets left empty count as stored only if they are in `root`
    (or always, with `empty_ok`: a card checked on a laptop after first boot blanked them)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        misses = near_misses(Path(path).parent)
        hint = f" (found {', '.join(m.name for m in misses)}: rename it)" if misses else ""
        raise ProvisionError([f"{path}: {exc.strerror}{hint}"]) from None
    return _plan(text, str(path), Path(root), empty_ok).node_id


def firstboot(boot: Path, root: Path = Path("/"), *, status: StatusHook | None = None,
              run: Callable[..., Any] = subprocess.run, force: bool = False) -> Result:
    """Apply BOOT/ronda.toml to the system at ROOT. Raises ProvisionError (after writing
    BOOT/ronda-error.txt) when the file is not usable; nothing is changed then."""
    status = status or (lambda state: None)
    boot, root = Path(boot), Path(root)
    src = boot / CONFIG_NAME
    renamed: list[str] = []
    if not src.is_file():
        found = near_misses(boot)
        if found and found[0].name == CONFIG_NAME + ".txt":  # Notepad's hidden extension
            os.replace(found[0], src)
            renamed.append(f"renamed {found[0].name} to {CONFIG_NAME}")
        elif found:
            problem = (f"{', '.join(f.name for f in found)}: found, but the settings file "
                       f"must be called exactly {CONFIG_NAME}: rename it")
            _write_error(boot, [problem])
            _record_rejection(under(root, STATE_FILE), found[0], [problem])
            status("error")
            raise ProvisionError([problem])
        else:
            return Result(False, f"no {src}")
    text = src.read_text(encoding="utf-8", errors="replace")
    digest = hashlib.sha256(text.encode()).hexdigest()
    state_path = under(root, STATE_FILE)
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text())
        if (not force and state.get("sha256") == digest
                and under(root, INSTALLED).exists()):
            if state.pop("rejected", None) is not None:  # a refused edit was reverted
                atomic_write(state_path, json.dumps(state, indent=1) + "\n")
            with contextlib.suppress(FileNotFoundError):
                (boot / ERROR_NAME).unlink()
            return Result(False, "unchanged since last applied")
    status("applying")
    try:
        plan = _plan(text, str(src), root)
        changes = _apply(plan, root, boot, run)
    except ProvisionError as exc:
        _write_error(boot, exc.problems)
        _record_rejection(state_path, src, exc.problems)
        status("error")
        raise
    stripped = strip_boot_copy(src, text)
    with contextlib.suppress(FileNotFoundError):
        (boot / ERROR_NAME).unlink()
    state_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(state_path, json.dumps({
        "sha256": hashlib.sha256(stripped.encode()).hexdigest(),
        "applied_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "node": plan.node_id, "changes": changes}, indent=1) + "\n")
    status("ok")
    return Result(True, "applied", renamed + changes)


def near_misses(boot: Path) -> list[Path]:
    """Files on the boot partition that look like a misnamed ronda.toml (ronda.toml.txt
    first: Windows hides known extensions, so "ronda.toml" saved by Notepad is that)."""
    try:
        names = [p for p in Path(boot).iterdir() if p.is_file()]
    except OSError:
        return []
    found = [p for p in names if p.name.lower().startswith("ronda")
             and ".toml" in p.name.lower() and p.name != CONFIG_NAME
             and not p.name.endswith(".example")]
    return sorted(found, key=lambda p: (p.name != CONFIG_NAME + ".txt", p.name))


def _apply(plan: _Plan, root: Path, boot: Path, run: Callable[..., Any]) -> list[str]:
    owner = owner_of(root)
    changes: list[str] = []
    if plan.provision.mount_storage:  # may format: first, so a failure changes nothing else
        changes += apply_storage(root, plan.provision.storage, run)
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
                  + tomlkit.dumps(plan.data).lstrip("\n"), owner)
    changes.append(f"config {INSTALLED}")
    changes += apply_hostname(root, plan.provision.hostname or plan.node_id)
    changes += apply_timezone(root, plan.provision.timezone)
    psk = plan.secrets.get("network.wifi_psk", "")
    if plan.provision.network.wifi_ssid and not psk:  # kept from a previous boot
        psk = config.read_secret(under(root, secret_file("network.wifi_psk"))) or ""
    changes += apply_wifi(root, plan.provision.network, psk)
    if plan.provision.network.wifi_ssid:
        changes += set_wifi_country(boot, plan.provision.network.wifi_country)
    return changes


def _record_rejection(state_path: Path, src: Path, problems: list[str]) -> None:
    """Note the refusal in firstboot.json: the daemon (safe mode, status LED, health) and
    `ronda doctor` report it; the last applied file's figures are kept."""
    from drivers.cameras.base import mask_credentials

    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_path.read_text())
    state["rejected"] = {"file": str(src), "problems": [mask_credentials(p) for p in problems],
                         "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with contextlib.suppress(OSError):
        state_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(state_path, json.dumps(state, indent=1) + "\n")


def _write_error(boot: Path, problems: list[str]) -> None:
    from drivers.cameras.base import mask_credentials  # the FAT file is world-readable

    text = (f"ronda firstboot {time.strftime('%Y-%m-%d %H:%M:%S')}: ronda.toml was NOT "
            "applied; the node keeps its previous settings.\nFix these lines and reboot:\n\n"
            + "".join(f"  {mask_credentials(p)}\n" for p in problems))
    with contextlib.suppress(OSError):
        atomic_write(boot / ERROR_NAME, text)
