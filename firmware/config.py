"""The node's one config file: TOML, validated by pydantic models, one model per area.

Each package owns the model of its own section (`recorder.settings.RecorderSettings`...);
this module composes them, reads secrets referenced by path, and turns validation errors
into lines a technician can act on::

    cameras[1].url: an rtsp camera needs `url` (rtsp://host/path) (got: {...})
"""

from __future__ import annotations

import logging
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from drivers.cameras.settings import CameraSettings
from drivers.gpio.settings import GpioSettings
from firmware.alarm.settings import AlarmSettings
from firmware.provision.settings import ProvisionSettings
from inference.settings import DetectSettings
from mqtt.settings import MqttSettings
from recorder.settings import RecorderSettings
from uplink.settings import UplinkSettings
from web.settings import WebSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

EX_CONFIG = 78  # sysexits.h: configuration error
SECRETISH = re.compile(r"pass|psk|secret|token|(^|[._])key($|_)", re.IGNORECASE)
NODE_ID = r"^[a-z0-9][a-z0-9-]*$"  # never a leading '-': it reaches `hostname` and topics


class NodeSettings(BaseModel):
    """`[node]`: who this watch post is."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=NODE_ID, max_length=64,
                    description="One MQTT topic level, e.g. 'mgl-kemirirejo-rw05'.")
    name: str = Field(default="", description="Human name, e.g. 'Pos Ronda RW 05 Kemirirejo'.")
    location: str | tuple[float, float] = Field(
        default="", description="Where the post is: an address, or [lat, lon] in degrees "
        "(WGS 84), which the node publishes in its health for the Command Center's map.")
    data_dir: Path = Field(default=Path("/var/lib/ronda"),
                           description="State: outbox, alarm state, indexes.")

    @field_validator("location")
    @classmethod
    def _on_earth(cls, value: str | tuple[float, float]) -> str | tuple[float, float]:
        if isinstance(value, tuple) and not (-90 <= value[0] <= 90 and -180 <= value[1] <= 180):
            raise ValueError("[lat, lon]: latitude -90..90, longitude -180..180")
        return value

    @property
    def position(self) -> list[float] | None:
        """[lat, lon] when `location` is coordinates, else None."""
        return list(self.location) if isinstance(self.location, tuple) else None


class Config(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid")

    node: NodeSettings
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    cameras: list[CameraSettings] = Field(default_factory=list)
    recorder: RecorderSettings = Field(default_factory=RecorderSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    gpio: GpioSettings = Field(default_factory=GpioSettings)
    alarm: AlarmSettings = Field(default_factory=AlarmSettings)
    provision: ProvisionSettings = Field(default_factory=ProvisionSettings)
    uplink: UplinkSettings = Field(default_factory=UplinkSettings)
    web: WebSettings = Field(default_factory=WebSettings)

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraSettings]) -> list[CameraSettings]:
        seen: set[str] = set()
        for cam in cameras:
            if cam.name in seen:
                raise ValueError(f"duplicate camera name {cam.name!r}: names must be unique")
            seen.add(cam.name)
        return cameras

    def camera(self, name: str) -> CameraSettings:
        return next(c for c in self.cameras if c.name == name)


@dataclass
class Problem:
    """One thing wrong with a config file."""

    path: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        got = "" if self.value is None else f" (got: {_short(self.value)})"
        return f"{self.path}: {self.message}{got}"


class ConfigError(Exception):
    """The file cannot be used; `problems` says why, field by field."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(map(str, problems)))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _problems_from(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        message = err["msg"].removeprefix("Value error, ")
        value = None if err["type"] == "missing" else err.get("input")
        if SECRETISH.search(_dotted(loc)):  # a password typed in the wrong place
            value = "(hidden)" if value is not None else None
        if err["type"] == "extra_forbidden":  # its value may be a password under a typo
            message = "unknown key (a typo? `ronda config-schema` lists the valid keys)"
            value = None
        problems.append(Problem(_dotted(loc), message, value))
    return problems


def secret_paths(model: BaseModel, prefix: str = "") -> list[tuple[str, Path]]:
    """Every set field marked `secret` in its schema, with its dotted path."""
    found: list[tuple[str, Path]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{prefix}.{name}" if prefix else name
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("secret") and value is not None:
            found.append((path, Path(value)))
        elif isinstance(value, BaseModel):
            found += secret_paths(value, path)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    found += secret_paths(item, f"{path}[{i}]")
    return found


def check_secrets(config: Config) -> tuple[list[Problem], list[str]]:
    """Secret files must be readable; one readable by group or others earns a warning."""
    problems, warnings = [], []
    for dotted, path in secret_paths(config):
        try:
            mode = path.stat().st_mode
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(Problem(dotted, f"secret file unreadable: {exc.strerror}", str(path)))
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"{dotted}: {path} is readable by others "
                            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    return problems, warnings


def read_secret(path: Path | None) -> str | None:
    """The first line of a secret file, without its newline."""
    if path is None:
        return None
    return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""


def parse(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate an already-parsed TOML document."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _problems_from(exc)) from None
    problems, warnings = check_secrets(config)
    cameras = {c.name for c in config.cameras}
    problems += [Problem(f"detect.{path}", message, value)
                 for path, message, value in config.detect.problems(cameras)]
    for warning in warnings:
        log.warning("%s", warning)
    if problems:
        raise ConfigError(source, problems)
    return config


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file; raises ConfigError naming every bad field."""
    source = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(source, [Problem("(file)", exc.strerror or str(exc))]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [Problem("(syntax)", f"not valid TOML: {exc}")]) from None
    except UnicodeDecodeError as exc:  # e.g. saved by Notepad as "ANSI"
        raise ConfigError(source, [Problem(
            "(syntax)", f"not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                        f"{exc.start}): save the file as UTF-8")]) from None
    return parse(data, source)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file."""
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Ronda node config (ronda.toml)"
    return schema
