"""`ronda update` refuses what is not a release before touching anything, prunes failed
releases, shows its progress and leaves its outcome for the daemon to publish."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from firmware.bus import EventBus
from firmware.events import UpdateEvent
from firmware.provision.update import (
    FAILED,
    Releases,
    UpdateError,
    record_outcome,
    update,
    wheel_version,
)
from firmware.wiring.system import SystemMonitor

ROOT = Path(__file__).resolve().parents[2]


def ronda(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "firmware", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("name", ["ronda-..-py3-none-any.whl", "ronda-current-py3-none-any.whl",
                                  "ronda-previous-py3-none-any.whl",
                                  "ronda-.-py3-none-any.whl", "ronda-latest-py3-none-any.whl"])
def test_a_wheel_whose_version_is_not_a_version_touches_nothing(tmp_path, name):
    opt = tmp_path / "opt"
    prefix = opt / "ronda"
    (prefix / "0.1.0").mkdir(parents=True)
    (prefix / "0.1.0" / ".release.json").write_text("{}")
    (prefix / "current").symlink_to("0.1.0")
    sentinel = opt / "other-software"
    sentinel.mkdir()
    wheel = tmp_path / name
    wheel.write_bytes(b"PK")
    before = sorted(p.name for p in opt.rglob("*"))
    with pytest.raises(UpdateError, match="not a release version"):
        wheel_version(wheel)
    if name == "ronda-..-py3-none-any.whl":  # the real CLI once (today: deletes all /opt)
        result = ronda("update", str(wheel), "--prefix", str(prefix), "--offline")
        assert result.returncode == 1 and "not a release version" in result.stderr
        assert "Traceback" not in result.stderr
    else:
        with pytest.raises(UpdateError):
            update(wheel, prefix=prefix, manager=None)  # type: ignore[arg-type]
    assert sorted(p.name for p in opt.rglob("*")) == before  # no lock file, nothing gone


def test_a_bad_argument_on_a_machine_without_ronda_creates_nothing(tmp_path):
    prefix = tmp_path / "opt" / "ronda"
    for args in (["--activate", ".."], ["--activate", "0.9.0"],
                 [str(tmp_path / "ronda-0.2.0-py3-none-any.whl")]):
        result = ronda("update", *args, "--prefix", str(prefix))
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "opt").exists()


def test_the_cli_says_it_needs_the_internet_unless_offline(tmp_path):
    wheel = tmp_path / "ronda-0.2.0-py3-none-any.whl"  # missing: refused after the notice
    online = ronda("update", str(wheel), "--prefix", str(tmp_path / "p"))
    assert "needs the internet" in online.stdout and "--offline --wheelhouse" in online.stdout
    offline = ronda("update", str(wheel), "--prefix", str(tmp_path / "p"), "--offline")
    assert "internet" not in offline.stdout


def test_prune_removes_failed_releases_first(tmp_path):
    releases = Releases(tmp_path / "opt")
    for i, version in enumerate(("0.1.0", "0.2.0", "0.3.0", "0.4.0")):
        releases.path(version).mkdir(parents=True)
        marker = releases.path(version) / ".release.json"
        marker.write_text("{}")
        os.utime(marker, (1000 + i, 1000 + i))
    (releases.path("0.4.0") / FAILED).write_text("{}")
    releases.set_link("current", "0.3.0")
    releases.set_link("previous", "0.2.0")
    assert releases.prune(keep=3) == ["0.4.0"]  # 300 MB back, 0.1.0 still fits in keep
    assert releases.installed() == ["0.1.0", "0.2.0", "0.3.0"]


def test_activate_checks_before_the_lock(tmp_path):
    with pytest.raises(UpdateError):
        update(None, version="../..", prefix=tmp_path / "none", manager=None)  # type: ignore
    assert not (tmp_path / "none").exists()


def test_the_daemon_publishes_the_outcome_once(tmp_path):
    record_outcome(tmp_path, "rolled_back", "0.3.0", "0.2.0", "ronda failed (exited)")
    bus = EventBus()
    seen: list[UpdateEvent] = []
    bus.publish = seen.append  # type: ignore[method-assign]
    monitor = SystemMonitor(bus, state_dir=tmp_path)
    monitor._announce_update()
    monitor._announce_update()
    assert len(seen) == 1 and seen[0].state == "rolled_back"
    assert seen[0].detail == {"from": "0.2.0", "to": "0.3.0"}
    again = SystemMonitor(bus, state_dir=tmp_path)  # a restarted daemon does not repeat it
    again._announce_update()
    assert len(seen) == 1
    assert json.loads((tmp_path / "update.json").read_text())["reason"].startswith("ronda")


def test_a_version_with_a_trailing_newline_is_not_a_version(tmp_path):
    """`$` also matches before a final newline: the check must cover the whole name."""
    with pytest.raises(UpdateError):
        wheel_version(tmp_path / "ronda-0.2.0\n-py3-none-any.whl")
    with pytest.raises(UpdateError):
        Releases(tmp_path).path("0.2.0\n")
