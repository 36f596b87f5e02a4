"""`[provision]` and `[secrets]`: what only first boot reads from the boot partition.

`[provision]` says how to set up the machine (hostname, Wi-Fi, the recordings SSD);
`[secrets]` carries inline secrets (the MQTT password, a Wi-Fi passphrase) that first boot
moves into 0600 files on the root filesystem and blanks out on the FAT copy::

    [provision]
    hostname = "mgl-kemirirejo-rw05"      # default: node.id

    [provision.network]
    wifi_ssid = "RW05-POS"
    wifi_country = "ID"

    [provision.storage]
    label = "RONDA-REC"                   # mount the SSD by label (or uuid = "...")
    format_device = ""                    # "/dev/sda1" formats it ONCE; erased after use

    [secrets]
    "mqtt.password" = "s3cret"            # -> mqtt.password_file = /etc/ronda/secrets/...
    "cameras.gang-utara.password" = "..." # -> that camera's password_file
    "network.wifi_psk" = "..."            # -> the NetworkManager connection (0600)
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SECRET_KEY = r"^(network\.wifi_psk|[a-z_]+\.[a-z_]+|cameras\.[a-z0-9][a-z0-9_-]*\.[a-z_]+)$"
HOSTNAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
DATA_ROOTS = ("srv", "mnt", "media")  # where a data disk may be mounted (FHS)


def no_control(value: str, what: str = "value") -> str:
    """Refuse newlines and other control characters: they would add lines or sections to
    the system files first boot writes (fstab, the NetworkManager keyfile)."""
    if CONTROL.search(value):
        raise ValueError(f"{what} must not contain newlines or other control characters")
    return value


class ProvisionError(Exception):
    """The boot file was not applied; `problems` lists why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class NetworkSettings(BaseModel):
    """Wi-Fi for posts without a cable. Leave `wifi_ssid` empty for Ethernet only."""

    model_config = ConfigDict(extra="forbid")

    wifi_ssid: str = Field(default="", max_length=32)
    wifi_country: str = Field(default="ID", pattern=r"^[A-Z]{2}$",
                              description="Regulatory domain (ISO 3166 alpha-2).")
    wifi_hidden: bool = False

    @field_validator("wifi_ssid")
    @classmethod
    def _ssid(cls, value: str) -> str:
        return no_control(value, "the Wi-Fi name")


class StorageSettings(BaseModel):
    """The recordings SSD: mounted by label or UUID with flash-friendly options."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(default="RONDA-REC", max_length=16,
                       description="Filesystem label to mount (ext4 labels are <= 16 bytes).")
    uuid: str = Field(default="", description="Filesystem UUID; wins over `label` when set.")
    fstype: Literal["ext4", "f2fs", "xfs"] = "ext4"
    mountpoint: Path = Path("/srv/ronda")
    options: str = Field(default="noatime,commit=60,errors=remount-ro",
                         description="Mount options; nofail and a device timeout are added.")
    format_device: str = Field(
        default="",
        description="Block device to FORMAT (all data lost) with `label`, e.g. /dev/sda1. "
                    "First boot erases this value from the boot partition once done.")

    @field_validator("format_device")
    @classmethod
    def _device_path(cls, value: str) -> str:
        # absolute (so never an mkfs option), one word, no `..`
        if value and (not re.fullmatch(r"/[A-Za-z0-9_/.+:@-]+", value)
                      or ".." in Path(value).parts):
            raise ValueError("format_device must be a device path, e.g. /dev/sda1")
        return value

    @field_validator("label", "uuid", "options")
    @classmethod
    def _one_fstab_field(cls, value: str) -> str:
        # fstab fields are separated by blanks: a space or newline would add fields or lines
        if re.search(r"\s", value) or CONTROL.search(value):
            raise ValueError("must not contain spaces, newlines or control characters")
        return value

    @field_validator("uuid")
    @classmethod
    def _uuid(cls, value: str) -> str:
        if value and not re.fullmatch(r"[0-9A-Fa-f-]{4,64}", value):
            raise ValueError("a filesystem UUID is hex digits and dashes (see `lsblk -f`)")
        return value

    @field_validator("mountpoint")
    @classmethod
    def _inside_root(cls, value: Path) -> Path:
        text = str(value)
        no_control(text, "mountpoint")
        parts = PurePosixPath(text).parts
        if not text.startswith("/") or ".." in parts or posixpath.normpath(text) == "/" \
                or re.search(r"\s", text):
            raise ValueError("mountpoint must be an absolute path below / without `..` or "
                             "spaces, e.g. /srv/ronda")
        normal = PurePosixPath(posixpath.normpath(text)).parts
        if len(normal) < 3 or normal[1] not in DATA_ROOTS:  # never over /etc, /var, /usr...
            raise ValueError("mountpoint must be a directory below /srv, /mnt or /media, "
                             "e.g. /srv/ronda")
        return Path(posixpath.normpath(text))


class ProvisionSettings(BaseModel):
    """`[provision]`: machine set-up applied by `ronda firstboot`."""

    model_config = ConfigDict(extra="forbid")

    hostname: str = Field(default="", pattern=r"^$|" + HOSTNAME[1:],
                          description="Default: node.id.")
    timezone: str = Field(default="Asia/Jakarta", pattern=r"^[A-Za-z_]+(/[A-Za-z_+-]+)*$")
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    mount_storage: bool = Field(default=True,
                                description="Add the recordings SSD to /etc/fstab.")


def check_secret_keys(secrets: dict[str, object]) -> list[str]:
    """Problems with the `[secrets]` table: bad keys or non-string values."""
    problems = []
    for key, value in secrets.items():
        if not re.match(SECRET_KEY, key):
            problems.append(f"secrets.{key}: unknown secret name (use e.g. 'mqtt.password', "
                            f"'cameras.<name>.password', 'network.wifi_psk')")
        elif not isinstance(value, str):
            problems.append(f"secrets.{key}: must be a string in quotes")
        elif CONTROL.search(value):
            problems.append(f"secrets.{key}: must not contain newlines or other control "
                            f"characters")
        elif key == "network.wifi_psk" and value and not (
                (8 <= len(value) <= 63 and value.isascii()) or re.fullmatch(r"[0-9a-fA-F]{64}",
                                                                         value)):
            problems.append("secrets.network.wifi_psk: a WPA passphrase is 8 to 63 "
                            "characters (or 64 hex digits)")
    return problems


def check_streams(data: dict[str, Any]) -> list[str]:
    """Camera addresses from the boot file must be network streams or video devices:
    `file:///etc/shadow` as a camera would let the card read any file on the node."""
    problems = []
    cams = data.get("cameras", [])
    for i, cam in enumerate(cams if isinstance(cams, list) else []):
        if not isinstance(cam, dict):
            continue
        for key in ("url", "substream_url"):
            value = cam.get(key)
            if isinstance(value, str) and value and (
                    not value.lower().startswith(STREAM_SCHEMES) or re.search(r"\s", value)):
                problems.append(f"cameras[{i}].{key}: must be a stream address starting with "
                                f"{', '.join(STREAM_SCHEMES)} (got {value.split(':', 1)[0]}:)")
        device = cam.get("device")
        if isinstance(device, str) and device and (not device.startswith("/dev/")
                                                   or ".." in device):
            problems.append(f"cameras[{i}].device: must be a video device, e.g. /dev/video0")
    return problems
