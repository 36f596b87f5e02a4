"""Safe mode: the panic button works whatever is wrong with the config file.

When `ronda run` cannot use its config (missing, not TOML, a typo in any field), the
daemon does not exit: it runs the alarm alone (panic buttons, siren, light, status LED)
and reports "config rejected: <field>: <reason>" in health, on the status LED and in
`ronda doctor`. Cameras, recorder and detection stay off until the file is fixed.

Each of `[gpio]` and `[alarm]` is taken from the first of these that is valid on its own:

1. the rejected file itself: its `[gpio]` is the latest word on how the post is wired
   (a typo in a camera's URL must not move the panic button back to other pins);
2. the last good settings, saved by every daemon that started with a valid config
   (`<data_dir>/last-good.json`);
3. the image's safe defaults (`firmware/data/safe-defaults.toml`): the documented
   standard panel wiring, siren capped at `siren_max_s`.

MQTT runs too when `[node]` and `[mqtt]` are each valid, so the Command Center learns
that the post is in safe mode.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from drivers.gpio.factory import real_board
from drivers.gpio.settings import GpioSettings
from firmware import config as config_mod
from firmware.alarm.settings import AlarmSettings
from firmware.config import Config, ConfigError, NodeSettings
from mqtt.settings import MqttSettings
from support.files import atomic_write

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULTS = Path(__file__).parent / "data" / "safe-defaults.toml"
LAST_GOOD = "last-good.json"
# Where a node without a usable config finds first boot's record and keeps its state;
# RONDA_DATA_DIR moves it (a test, an unusual install).
DEFAULT_DATA_DIR = Path(os.environ.get("RONDA_DATA_DIR") or "/var/lib/ronda")


@dataclass
class Rejection:
    """Why the config was not used, and where the safe settings came from."""

    source: str
    problems: list[str]
    sources: dict[str, str] = field(default_factory=dict)  # section -> where it came from
    # Every valid [gpio] in order of preference (the chosen one first): pins that pass
    # validation can still fail to be claimed (one pin under two names, no such pin).
    gpio_candidates: list[tuple[str, GpioSettings]] = field(default_factory=list)

    @property
    def reason(self) -> str:
        """'config rejected: <field>: <reason>' (the first problem; the count of others)."""
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"config rejected: {self.problems[0]}{more}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.source, "reason": self.reason, "problems": self.problems,
                "sources": self.sources}


def _read_toml(path: Path) -> dict[str, Any]:
    # ValueError: not TOML (TOMLDecodeError), or not UTF-8 (UnicodeDecodeError)
    with contextlib.suppress(OSError, ValueError), \
            open(path, "rb") as fh:
        return config_mod.tomllib.load(fh)
    return {}


def _valid(model: type[BaseModel], data: Any) -> BaseModel | None:
    if not isinstance(data, dict):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


def _fallback_node(raw: dict[str, Any]) -> NodeSettings:
    node = _valid(NodeSettings, raw.get("node"))
    if isinstance(node, NodeSettings):
        try:  # a data_dir that cannot be made must not keep the alarm from starting
            Path(node.data_dir).mkdir(parents=True, exist_ok=True)
            return node
        except OSError:
            return node.model_copy(update={"data_dir": DEFAULT_DATA_DIR})
    name = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower()).strip("-")[:64]
    return NodeSettings(id=name or "unconfigured", data_dir=DEFAULT_DATA_DIR)


def last_good_path(data_dir: Path) -> Path:
    return Path(data_dir) / LAST_GOOD


def save_last_good(cfg: Config) -> None:
    """Remember `[gpio]` and `[alarm]` of a config that was accepted (for safe mode)."""
    data = {"gpio": cfg.gpio.model_dump(mode="json", exclude_defaults=True),
            "alarm": cfg.alarm.model_dump(mode="json", exclude_defaults=True)}
    try:
        atomic_write(last_good_path(cfg.node.data_dir), json.dumps(data, indent=1) + "\n",
                     mode=0o640)
    except OSError as exc:
        log.warning("cannot save the last good alarm settings: %s", exc)


def _last_good(data_dir: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(last_good_path(data_dir).read_text())
        return data if isinstance(data, dict) else {}
    return {}


def boot_rejection(data_dir: Path = DEFAULT_DATA_DIR) -> Rejection | None:
    """The boot-partition ronda.toml that `ronda firstboot` refused last (it records it in
    `<data_dir>/firstboot.json`), or None when the last one was applied."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        state = json.loads((Path(data_dir) / "firstboot.json").read_text())
        rejected = state.get("rejected")
        if rejected and rejected["problems"]:
            return Rejection(str(rejected["file"]), [str(p) for p in rejected["problems"]],
                             {"gpio": "the previous config", "alarm": "the previous config",
                              "mqtt": "the previous config"})
    return None


def safe_config(path: str | Path, error: ConfigError,
                boot: Rejection | None = None) -> tuple[Config, Rejection]:
    """The config safe mode runs with: the alarm (and MQTT when usable), nothing else.
    `boot`: a refused boot-partition file; when the installed config is missing it is
    the one reported, and its own sections are tried first."""
    raw = _read_toml(Path(path))
    problems = [str(p) for p in error.problems]
    if boot is not None and not raw:
        path, raw, problems = boot.source, _read_toml(Path(boot.source)), boot.problems
    node = _fallback_node(raw)
    rejection = Rejection(str(path), problems)
    candidates = {"the rejected file": raw, "the last good config": _last_good(node.data_dir),
                  "the image's safe defaults": _read_toml(DEFAULTS)}
    chosen: dict[str, BaseModel] = {}
    for section, model in (("gpio", GpioSettings), ("alarm", AlarmSettings)):
        valid = [(where, value) for where, data in candidates.items()
                 if (value := _valid(model, data.get(section))) is not None]  # missing: no
        if not valid:  # cannot happen with the shipped defaults; never leave without an alarm
            valid = [("built-in defaults", model())]
        rejection.sources[section], chosen[section] = valid[0]
        if section == "gpio":
            rejection.gpio_candidates = valid  # type: ignore[assignment]
    mqtt = MqttSettings(enabled=False)
    rejection.sources["mqtt"] = "off"
    if _valid(NodeSettings, raw.get("node")) is not None and isinstance(raw.get("mqtt"), dict):
        candidate = _valid(MqttSettings, raw["mqtt"])
        if isinstance(candidate, MqttSettings) and candidate.enabled:
            probe = Config(node=node, mqtt=candidate, cameras=[])
            problems, _ = config_mod.check_secrets(probe)
            if not problems:
                mqtt, rejection.sources["mqtt"] = candidate, "the rejected file"
    cfg = Config(node=node, mqtt=mqtt, cameras=[], gpio=chosen["gpio"],
                 alarm=chosen["alarm"], recorder={"enabled": False},
                 detect={"enabled": False})
    return cfg, rejection


def open_first_gpio(candidates: list[tuple[str, GpioSettings]],
                    opener: Callable[[GpioSettings], T]) -> tuple[str, GpioSettings, T | None,
                                                                  str]:
    """Claim the pins of the first candidate `[gpio]` that works: `opener(settings)` raises
    when its pins cannot be claimed. Simulated pins on a real board are no panic button, so
    they are skipped while another candidate remains. Returns (where, settings, what
    `opener` returned or None, the errors of the ones that failed)."""
    errors: list[str] = []
    board = real_board()
    for i, (where, gpio) in enumerate(candidates):
        if gpio.enabled and gpio.pin_factory == "mock" and board and i + 1 < len(candidates):
            errors.append(f'{where}: pin_factory = "mock" on a real {board}')
            continue
        try:
            return where, gpio, opener(gpio), "; ".join(errors)
        except Exception as exc:  # PinFactoryError, a pin in use, no such pin...
            errors.append(f"{where}: {exc}" if len(candidates) > 1 else str(exc))
    where, gpio = candidates[0]
    return where, gpio, None, "; ".join(errors)
