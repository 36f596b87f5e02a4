"""`ronda update`: real releases (venvs with real ronda wheels of HEAD), the real daemon
started by a child-process service manager (systemd cannot run here), switch and rollback.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from child_manager import ChildManager

from firmware.cli import main
from firmware.provision.update import (
    FAILED,
    HealthGate,
    Releases,
    UpdateError,
    update,
    wait_healthy,
)

GATE = HealthGate(timeout_s=60, settle_s=2.0, poll_s=0.1)


def crash_on_run(src: Path) -> None:
    """A release whose daemon dies at start (a bad import, say)."""
    path = src / "firmware" / "commands" / "run.py"
    text, n = re.subn(r"(def run\(args: argparse\.Namespace\) -> int:\n)",
                      r'\1    raise SystemExit("broken release")\n', path.read_text())
    assert n == 1
    path.write_text(text)


def running_release(manager: ChildManager, prefix: Path) -> str:
    """The release directory the running daemon was started from (its argv)."""
    pid = manager.state("ronda").main_pid
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    script = next(a.decode() for a in argv if a.endswith(b"/bin/ronda"))
    return Path(script).relative_to(prefix).parts[0]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[tuple[Path, Path, ChildManager]]:
    prefix = tmp_path / "opt-ronda"
    cfg = tmp_path / "ronda.toml"
    cfg.write_text(f'[node]\nid = "rw05"\ndata_dir = "{tmp_path / "state"}"\n'
                   f'[mqtt]\nenabled = false\n[gpio]\npin_factory = "mock"\n'
                   f'[recorder]\npath = "{tmp_path / "rec"}"\n')

    def command(_unit: str) -> list[str]:  # re-resolved at each restart, like ExecStart
        return [str((prefix / "current").resolve() / "bin" / "ronda"), "run", "--config",
                str(cfg)]

    manager = ChildManager(command, log=tmp_path / "daemon.log")
    yield prefix, cfg, manager
    manager.close()


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_update_switches_and_rolls_back_a_broken_release(node, make_wheel, wheelhouse):
    prefix, cfg, manager = node
    releases = Releases(prefix)
    opts = {"wheelhouse": wheelhouse, "offline": True, "extras": "detect"}
    broken = make_wheel.soon("0.3.0", crash_on_run)  # builds while 0.2.0 installs
    # first release onto an empty prefix: nothing to roll back to, must come up
    result = update(make_wheel("0.2.0"), prefix=prefix, manager=manager, config=cfg,
                    gate=GATE, **opts)
    assert (result.version, result.previous) == ("0.2.0", None)
    assert releases.current == "0.2.0" and running_release(manager, prefix) == "0.2.0"
    assert os.access(prefix / "0.2.0" / "bin" / "ronda", os.X_OK)
    pid = manager.state("ronda").main_pid

    # a release whose daemon dies at start: switched, found unhealthy, switched back
    with pytest.raises(UpdateError) as info:
        update(broken.result(), prefix=prefix, manager=manager,
               config=cfg, gate=GATE, **opts)
    assert info.value.switched and info.value.rolled_back
    assert "rolled back to 0.2.0" in str(info.value)
    assert releases.current == "0.2.0" and running_release(manager, prefix) == "0.2.0"
    assert manager.state("ronda").main_pid != pid  # restarted on the old release
    assert "failed" in json.loads((prefix / "0.3.0" / FAILED).read_text())["reason"]

    # a release that rejects the node's config is never switched to
    bad = cfg.with_name("future.toml")
    bad.write_text(cfg.read_text() + "[unknown_section]\nx = 1\n")
    pid = manager.state("ronda").main_pid
    with pytest.raises(UpdateError) as info:
        update(None, version="0.3.0", prefix=prefix, manager=manager, config=bad, gate=GATE)
    assert info.value.config_rejected and not info.value.switched
    assert releases.current == "0.2.0" and manager.state("ronda").main_pid == pid

    # activating an installed release goes through the same gate
    with pytest.raises(UpdateError, match=r"rolled back to 0\.2\.0"):
        update(None, version="0.3.0", prefix=prefix, manager=manager, config=cfg, gate=GATE)
    assert running_release(manager, prefix) == "0.2.0"


def test_prune_keeps_current_previous_and_the_newest(tmp_path):
    releases = Releases(tmp_path / "opt")
    for i, version in enumerate(("0.1.0", "0.2.0", "0.3.0", "0.4.0", "0.5.0")):
        (releases.path(version)).mkdir(parents=True)
        marker = releases.path(version) / ".release.json"
        marker.write_text("{}")
        os.utime(marker, (1000 + i, 1000 + i))
    releases.set_link("current", "0.2.0")
    releases.set_link("previous", "0.1.0")
    assert releases.prune(keep=3) == ["0.3.0", "0.4.0"]
    assert releases.installed() == ["0.1.0", "0.2.0", "0.5.0"]
    assert releases.current == "0.2.0"


def test_list_shows_current_previous_and_failed(tmp_path, capsys):
    prefix = tmp_path / "opt"
    releases = Releases(prefix)
    for i, version in enumerate(("0.1.0", "0.2.0", "0.3.0")):
        (prefix / version).mkdir(parents=True)
        marker = prefix / version / ".release.json"
        marker.write_text("{}")
        os.utime(marker, (1000 + i, 1000 + i))
    (prefix / "0.3.0" / FAILED).write_text("{}")
    releases.set_link("current", "0.2.0")
    releases.set_link("previous", "0.1.0")
    assert main(["update", "--list", "--prefix", str(prefix)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["0.1.0", "previous"]
    assert lines[1].split() == ["0.2.0", "*", "current"]
    assert "failed health check" in lines[2]


def _python(code: str) -> list[str]:
    repo = str(Path(__file__).resolve().parents[2])
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {repo!r})\n{code}"]


@pytest.mark.parametrize(("code", "why"), [
    ("import time; time.sleep(60)", "not READY"),
    ("from firmware.notify import notify; import time\n"
     "notify('READY=1'); time.sleep(0.5); raise SystemExit(1)", "failed"),
    ("raise SystemExit(3)", "failed"),
])
def test_gate_refuses_silent_dying_and_crashing_daemons(code, why):
    manager = ChildManager(lambda _unit: _python(code))
    try:
        manager.restart("ronda")
        gate = HealthGate(timeout_s=3, settle_s=1.5, poll_s=0.05)
        problem = wait_healthy(manager, "ronda", "9.9", gate, time.time())
    finally:
        manager.close()
    assert why in problem


def test_gate_checks_the_health_file_version(tmp_path):
    health = tmp_path / "health.json"
    code = ("from firmware.notify import notify; import json, time\n"
            f"open({str(health)!r}, 'w').write(json.dumps({{'version': '0.1.0'}}))\n"
            "notify('READY=1'); time.sleep(60)")
    manager = ChildManager(lambda _unit: _python(code))
    try:
        manager.restart("ronda")
        gate = HealthGate(timeout_s=3, settle_s=0.5, health_file=health, poll_s=0.05)
        assert "says version 0.1.0, not 0.2.0" in wait_healthy(
            manager, "ronda", "0.2.0", gate, time.time() - 1)
        assert wait_healthy(manager, "ronda", "0.1.0", gate, time.time() - 5) == ""
    finally:
        manager.close()


def test_systemd_manager_drives_systemctl():
    """The commands and the parsing, with systemctl's real output format."""
    from firmware.provision.services import SystemdManager

    calls: list[list[str]] = []

    class Done:
        def __init__(self, stdout: str = "") -> None:
            self.stdout, self.returncode = stdout, 0

    def fake_run(args, **_kw):
        calls.append(args)
        if args[1] == "show":
            return Done("ActiveState=active\nMainPID=4242\nNRestarts=2\n"
                        "StatusText=3 cameras online\n")
        return Done()

    manager = SystemdManager(run=fake_run)
    manager.restart("ronda")
    state = manager.state("ronda")
    assert calls[:2] == [["systemctl", "reset-failed", "ronda"],
                         ["systemctl", "restart", "--no-block", "ronda"]]
    assert state.running and (state.main_pid, state.restarts) == (4242, 2)
    assert state.status == "3 cameras online"


class LaggingSystemd:
    """What `systemctl show` reports after `restart --no-block`: the old process still
    active for a few polls, then deactivating, activating, and the new one active."""

    def __init__(self, script: list[tuple[str, int, int]]) -> None:
        self.script = script

    def state(self, _unit: str):
        from firmware.provision.services import ServiceState

        active, pid, restarts = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return ServiceState(active, pid, restarts)


def test_gate_waits_out_the_old_process_after_a_no_block_restart():
    gate = HealthGate(timeout_s=5, settle_s=0.05, poll_s=0.01)
    script = [("active", 100, 0)] * 3 + [("deactivating", 100, 0), ("activating", 200, 0),
                                         ("active", 200, 0)]
    assert wait_healthy(LaggingSystemd(list(script)), "ronda", "1", gate, 0,
                        old_pid=100) == ""
    # without knowing the old PID, the old process stopping looks like the new one dying
    assert "went deactivating after being ready" in wait_healthy(
        LaggingSystemd(list(script)), "ronda", "1", HealthGate(5, 0.5, poll_s=0.01), 0)


def test_gate_catches_automatic_restarts():
    gate = HealthGate(timeout_s=5, settle_s=1, poll_s=0.01)
    script = [("active", 200, 0)] * 5 + [("activating", 0, 1)]
    assert "restarted by the service manager" in wait_healthy(
        LaggingSystemd(script), "ronda", "1", gate, 0, old_pid=100)
