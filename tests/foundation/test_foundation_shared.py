"""`ctx.shared` is typed: a misspelt name fails where it is written, and an area whose
provider is missing fails at start (named in the health's faults), never silently."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import firmware.wiring as wiring
from firmware import config
from firmware.bus import EventBus
from firmware.wiring import Context, MissingProvider, Shared, build_all
from firmware.wiring.shared import PROVIDERS


def node(tmp_path: Path, **extra) -> config.Config:
    return config.parse({"node": {"id": "rw05", "data_dir": str(tmp_path)},
                         "mqtt": {"enabled": False}, "gpio": {"enabled": False}, **extra})


def test_every_service_names_its_provider() -> None:
    names = {f.name for f in dataclasses.fields(Shared) if not f.name.startswith("_")}
    assert names and names == set(PROVIDERS)


def test_misspelt_names_are_errors_not_defaults() -> None:
    shared = Shared(armed=lambda now=None: False)
    with pytest.raises(AttributeError):
        shared.armd = lambda now=None: True  # type: ignore[attr-defined]
    with pytest.raises(KeyError, match="no shared service 'armd'"):
        shared.get("armd", lambda now=None: True)
    with pytest.raises(KeyError, match="no shared service 'armd'"):
        shared["armd"] = lambda now=None: True
    # the existing mapping access still works for the known names
    assert shared["armed"]() is False and "armed" in shared and "alarm" not in shared
    with pytest.raises(KeyError):
        shared["alarm"]  # not offered: absent, as in a dict


def test_need_and_later() -> None:
    shared = Shared()
    with pytest.raises(MissingProvider, match="needs the shared service 'cameras'"):
        shared.need("cameras", "detect")
    armed = shared.later("armed", "detect")
    assert shared.unmet() == [("detect", "armed")]
    with pytest.raises(MissingProvider):
        armed()
    shared.armed = lambda now=None: True
    assert shared.unmet() == [] and armed()() is True


def test_a_dict_of_services_is_accepted(tmp_path: Path) -> None:
    ctx = Context(node(tmp_path), EventBus(), dict, tmp_path, {"snapshot": len})
    assert isinstance(ctx.shared, Shared) and ctx.shared.snapshot is len
    with pytest.raises(KeyError):
        Context(node(tmp_path), EventBus(), dict, tmp_path, {"snapshots": len})


def test_an_area_whose_provider_is_missing_fails_at_start(
        tmp_path: Path, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Detection asks for the alarm area's `armed`: without the alarm area it does not run
    (it would alert as if always armed) and the health report says why."""
    cfg = node(tmp_path, cameras=[{"name": "gang", "url": "rtsp://cam/1"}],
               detect={"enabled": True, "model": str(models_dir / "pose_detection.tflite")})
    areas = {name: on for name, on in wiring.AREAS.items() if name != "alarm"}
    monkeypatch.setattr(wiring, "AREAS", areas)
    ctx = Context(cfg, EventBus(), dict, tmp_path)
    components = build_all(ctx)
    assert "detect" not in [c.name for c in components]
    assert "'armed'" in ctx.faults["detect"] and "alarm area" in ctx.faults["detect"]
    monkeypatch.setattr(wiring, "AREAS", {**areas, "alarm": lambda config: True})
    ctx = Context(cfg, EventBus(), dict, tmp_path)
    components = build_all(ctx)
    assert "detect" in [c.name for c in components] and not ctx.faults
    for component in components:
        component.stop()
