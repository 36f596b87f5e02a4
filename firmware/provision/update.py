"""`ronda update`: install a release beside the running one, switch, verify, or roll back.

Layout (the image and scripts/install-jetson create it)::

    /opt/ronda/0.1.0/        a venv with ronda 0.1.0 installed (bin/ronda, .release.json)
    /opt/ronda/0.2.0/
    /opt/ronda/current  -> 0.2.0     what ronda.service runs
    /opt/ronda/previous -> 0.1.0     where `ronda update --rollback` goes

An update never touches the running release: the new one is installed into its own
directory and must pass `ronda --version` and `ronda check-config` on the node's config
before anything is switched. Then `current` is switched atomically (rename of a new
symlink), the service restarted, and the new release must become READY (systemd
`active` for a Type=notify unit) and stay up, same PID, for `settle_s` - longer than
WatchdogSec, so a daemon whose components stall is caught by the watchdog first. If a
health file is written, it must name the new version. Anything else within `timeout_s`
switches `current` back and restarts the old release.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.provision.services import ServiceManager
from support.files import atomic_write

log = logging.getLogger(__name__)

MARKER = ".release.json"
FAILED = ".failed.json"
WHEEL_NAME = re.compile(r"^ronda-(?P<version>[^-]+)-[^-]+-[^-]+-[^-]+\.whl$")
# A PEP 440 public version (as wheels spell it), optionally with a local part. It names a
# directory under the prefix, so `..`, `current`, `previous` or `/` can never be one.
VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?"
                     r"(\+[A-Za-z0-9]+(\.[A-Za-z0-9]+)*)?$")
Progress = Callable[[str], None]


class UpdateError(Exception):
    """The update did not happen; `rolled_back` says whether the old release runs again."""

    def __init__(self, message: str, *, switched: bool = False, rolled_back: bool = True,
                 config_rejected: bool = False) -> None:
        super().__init__(message)
        self.switched = switched
        self.rolled_back = rolled_back
        self.config_rejected = config_rejected


@dataclass
class UpdateResult:
    """A successful update (or activation)."""

    version: str
    previous: str | None
    seconds: float
    steps: list[str] = field(default_factory=list)


def check_version(version: str, what: str = "version") -> str:
    """`version` if it is a release version (e.g. 0.2.0, 1.0rc1), else UpdateError."""
    if not VERSION.fullmatch(version or ""):
        raise UpdateError(f"{what} {version!r} is not a release version (e.g. 0.2.0): "
                          "refused, nothing touched")
    return version


def wheel_version(wheel: Path) -> str:
    """The version in a ronda wheel's file name (PEP 427), checked to be a version."""
    match = WHEEL_NAME.fullmatch(Path(wheel).name)
    if not match:
        raise UpdateError(f"{wheel}: not a ronda wheel (expected ronda-VERSION-py3-none-any.whl)")
    return check_version(match["version"], f"{Path(wheel).name}: version")


class Releases:
    """The release directories under `prefix` and the `current`/`previous` links."""

    def __init__(self, prefix: Path) -> None:
        self.prefix = Path(prefix)

    def path(self, version: str) -> Path:
        return self.prefix / check_version(version)

    def _link(self, name: str) -> str | None:
        with contextlib.suppress(OSError):
            return os.readlink(self.prefix / name).rstrip("/").rsplit("/", 1)[-1]
        return None

    @property
    def current(self) -> str | None:
        return self._link("current")

    @property
    def previous(self) -> str | None:
        return self._link("previous")

    def installed(self) -> list[str]:
        """Complete releases, oldest first."""
        found = [p for p in self.prefix.iterdir()
                 if not p.is_symlink() and (p / MARKER).is_file()] \
            if self.prefix.is_dir() else []
        return [p.name for p in sorted(found, key=lambda p: (p / MARKER).stat().st_mtime)]

    def set_link(self, name: str, version: str) -> None:
        """Point `name` at `version` atomically (a reader sees the old or the new link)."""
        tmp = self.prefix / f".{name}.new"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(version)
        os.replace(tmp, self.prefix / name)
        _fsync_dir(self.prefix)

    def failed(self, version: str) -> bool:
        return (self.path(version) / FAILED).exists()

    def prune(self, keep: int) -> list[str]:
        """Delete releases that failed their health check (each is ~300 MB), then the
        oldest beyond `keep`; never current or previous."""
        protected = {self.current, self.previous}
        candidates = [v for v in self.installed() if v not in protected and VERSION.fullmatch(v)]
        removed = [v for v in candidates if self.failed(v)]
        candidates = [v for v in candidates if v not in removed]
        extra = len(candidates) - max(0, keep - len(protected - {None}))
        removed += candidates[:max(0, extra)]
        for version in removed:
            shutil.rmtree(self.path(version), ignore_errors=True)
        return removed

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One update at a time."""
        self.prefix.mkdir(parents=True, exist_ok=True)
        with open(self.prefix / ".update.lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise UpdateError("another `ronda update` is running") from None
            yield


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def base_python(releases: Releases) -> str:
    """The interpreter the current release's venv was made from (else this one's)."""
    cfg = releases.prefix / "current" / "pyvenv.cfg"
    with contextlib.suppress(OSError):
        values = dict(line.split(" = ", 1) for line in cfg.read_text().splitlines()
                      if " = " in line)
        exe = values.get("executable") or str(Path(values["home"]) / "python3")
        if Path(exe).exists():
            return exe
    return getattr(sys, "_base_executable", sys.executable)


def _system_site_packages(releases: Releases) -> bool:
    with contextlib.suppress(OSError):
        cfg = (releases.prefix / "current" / "pyvenv.cfg").read_text()
        return "include-system-site-packages = true" in cfg
    return False


def install_release(wheel: Path, releases: Releases, *, python: str | None = None,
                    wheelhouse: Path | None = None, offline: bool = False, extras: str = "",
                    system_site_packages: bool | None = None,
                    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
                    progress: Progress = lambda line: None) -> Path:
    """Create PREFIX/<version> as a venv with `wheel` installed; reuse a complete one."""
    wheel = Path(wheel).resolve()
    version = wheel_version(wheel)
    dest = releases.path(version)
    if (dest / MARKER).is_file() and not (dest / FAILED).exists():
        progress(f"{version} is already installed in {dest}")
        return dest
    if dest.exists():
        shutil.rmtree(dest)  # a half-installed or failed attempt
    python = python or base_python(releases)
    ssp = _system_site_packages(releases) if system_site_packages is None else \
        system_site_packages
    venv = [python, "-m", "venv", *(["--system-site-packages"] if ssp else []), str(dest)]
    pip = [str(dest / "bin" / "python"), "-m", "pip", "install", "--quiet",
           "--disable-pip-version-check", "--find-links", str(wheel.parent)]
    if wheelhouse:
        pip += ["--find-links", str(wheelhouse)]
    if offline:
        pip.append("--no-index")
    pip.append(f"ronda[{extras}] @ {wheel.as_uri()}" if extras else str(wheel))
    source = ("the wheel's folder" + (f" and {wheelhouse}" if wheelhouse else "")
              if offline else "the package index (needs the internet)")
    try:
        for args, doing in ((venv, f"creating {dest}"),
                            (pip, f"installing ronda {version} and its dependencies from "
                                  f"{source}; this takes minutes on a Pi")):
            progress(doing)
            proc = run(args, capture_output=True, text=True, timeout=1800)
            if proc.returncode != 0:
                raise UpdateError(f"{' '.join(args[:4])}... failed: "
                                  f"{(proc.stderr or proc.stdout).strip()[-800:]}")
        out = run([str(dest / "bin" / "ronda"), "--version"], capture_output=True, text=True,
                  timeout=120)
        if out.returncode != 0 or out.stdout.split()[-1:] != [version]:
            raise UpdateError(f"the new release does not run: `ronda --version` said "
                              f"{(out.stdout + out.stderr).strip()[-400:]!r}")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    atomic_write(dest / MARKER, json.dumps({
        "version": version, "wheel": wheel.name, "sha256": digest, "extras": extras,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1) + "\n")
    return dest


def check_config_with(release: Path, config: Path,
                      run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """'' if the release accepts the node's config, else what it said."""
    if not config.exists():
        return ""
    proc = run([str(release / "bin" / "ronda"), "check-config", str(config)],
               capture_output=True, text=True, timeout=120)
    return "" if proc.returncode == 0 else (proc.stderr or proc.stdout).strip()[-800:]


@dataclass
class HealthGate:
    """When the restarted service counts as healthy."""

    timeout_s: float = 120.0  # READY must come within this
    settle_s: float = 40.0  # then stay up (same PID) this long: > WatchdogSec (30 s)
    health_file: Path | None = None  # if the daemon writes one, it must name the version
    require_health_file: bool = False
    poll_s: float = 0.5


def wait_healthy(manager: ServiceManager, unit: str, version: str, gate: HealthGate,
                 since: float, sleep: Callable[[float], None] = time.sleep,
                 old_pid: int = 0) -> str:
    """'' when healthy, else why not. `old_pid` is the main PID before the restart: a
    restart queued with --no-block may still show the old process as active for a while,
    which must not count as the new release being up."""
    deadline = time.monotonic() + gate.timeout_s
    up_since: float | None = None
    pid, restarts = 0, None
    last = "never started"
    while True:
        st = manager.state(unit)
        now = time.monotonic()
        if restarts is None:
            restarts = st.restarts
        if st.active == "failed":
            return f"{unit} failed ({st.status or 'exited'})"
        if st.restarts != restarts:
            return f"{unit} was restarted by the service manager (crash or watchdog)"
        if st.running and old_pid and st.main_pid == old_pid:
            last = f"{unit} still runs the old process (PID {old_pid})"
        elif st.running:
            if up_since is None or st.main_pid != pid:
                if up_since is not None:
                    return f"{unit} restarted (PID {pid} -> {st.main_pid})"
                up_since, pid = now, st.main_pid
            if now - up_since >= gate.settle_s:
                problem = _health_problem(gate, version, since)
                if not problem:
                    return ""
                last = problem
        else:
            if up_since is not None:
                return f"{unit} went {st.active} after being ready"
            last = f"{unit} is {st.active}, not READY"
        if now >= deadline + (gate.settle_s if up_since is not None else 0):
            return f"{last} after {gate.timeout_s:.0f} s"
        sleep(gate.poll_s)


def _health_problem(gate: HealthGate, version: str, since: float) -> str:
    if gate.health_file is None:
        return ""
    try:
        if gate.health_file.stat().st_mtime < since:
            raise FileNotFoundError
        health = json.loads(gate.health_file.read_text())
    except (OSError, ValueError):
        return (f"no fresh health report in {gate.health_file}"
                if gate.require_health_file else "")
    if health.get("version") != version:
        return f"health report says version {health.get('version')}, not {version}"
    return ""


class _Steps(list):
    """The steps done, each also reported to `progress` as it happens."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self.progress = progress

    def append(self, step: str) -> None:
        super().append(step)
        self.progress(step)


def switch(releases: Releases, version: str, manager: ServiceManager, unit: str,
           gate: HealthGate, steps: list[str]) -> str:
    """Point `current` at `version`, restart, wait; '' when healthy."""
    releases.set_link("current", version)
    steps.append(f"current -> {version}")
    since = time.time()
    old_pid = manager.state(unit).main_pid
    manager.restart(unit)
    steps.append(f"restarted {unit}; waiting up to {gate.timeout_s:.0f} s for READY, then "
                 f"{gate.settle_s:.0f} s of steady running")
    return wait_healthy(manager, unit, version, gate, since - 1, old_pid=old_pid)


def update(wheel: Path | None, *, prefix: Path, manager: ServiceManager, unit: str = "ronda",
           config: Path = Path("/etc/ronda/ronda.toml"), gate: HealthGate | None = None,
           version: str | None = None, keep: int = 3, progress: Progress = lambda line: None,
           **install: Any) -> UpdateResult:
    """Install `wheel` (or activate the installed `version`), switch to it and keep it only
    if it comes up healthy; else roll back and raise UpdateError. Every argument is checked
    before anything is touched (no lock file, no directory)."""
    gate = gate or HealthGate()
    releases = Releases(prefix)
    started = time.monotonic()
    steps: list[str] = _Steps(progress)
    if wheel is not None:
        wheel_version(Path(wheel))
        if not Path(wheel).is_file():
            raise UpdateError(f"{wheel}: no such file")
    else:
        check_version(version or "", "release")
        if not (Path(prefix) / version / MARKER).is_file():  # type: ignore[operator]
            raise UpdateError(f"release {version} is not installed under {prefix} "
                              f"(installed: {', '.join(releases.installed()) or 'none'})")
    with releases.lock():
        old = releases.current
        if wheel is not None:
            path = install_release(Path(wheel), releases, progress=progress, **install)
            version = path.name
            steps.append(f"installed {version} in {path}")
        path = releases.path(version)
        if version == old:
            raise UpdateError(f"{version} is already the current release")
        complaint = check_config_with(path, config)
        if complaint:
            raise UpdateError(f"{version} rejects {config}, nothing switched:\n{complaint}",
                              config_rejected=True, rolled_back=False)
        steps.append(f"{version} accepts {config}")
        problem = switch(releases, version, manager, unit, gate, steps)
        if not problem:
            if old:
                releases.set_link("previous", old)
            removed = releases.prune(keep)
            if removed:
                steps.append(f"removed old release(s) {', '.join(removed)}")
            (path / FAILED).unlink(missing_ok=True)
            return UpdateResult(version, old, time.monotonic() - started, steps)
        steps.append(f"{version} unhealthy: {problem}")
        atomic_write(path / FAILED, json.dumps({"reason": problem, "at": time.time()}) + "\n")
        if old is None:
            raise UpdateError(f"{version}: {problem}; no previous release to go back to",
                              switched=True, rolled_back=False)
        back = switch(releases, old, manager, unit,
                      HealthGate(gate.timeout_s, min(gate.settle_s, 10.0), None), steps)
        raise UpdateError(f"{version}: {problem}; " + (
            f"rolled back to {old}" if not back else f"rollback to {old} ALSO failed: {back}"),
            switched=True, rolled_back=not back)


# ---- telling the Command Center ---------------------------------------------------------

OUTCOME = "update.json"  # in the node's state directory, written by `ronda update`
ANNOUNCED = "update.announced"  # the id of the outcome the daemon has published


def record_outcome(state_dir: Path, state: str, version: str | None, previous: str | None,
                   reason: str = "") -> None:
    """Leave the outcome where the daemon finds it; it publishes an `update` event (the
    daemon that runs after an update or a rollback is the one that can reach the broker)."""
    outcome = {"id": f"{time.time():.6f}", "state": state, "to": version, "from": previous,
               "reason": reason[-400:], "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(Path(state_dir) / OUTCOME, json.dumps(outcome) + "\n", mode=0o644)


def unannounced_outcome(state_dir: Path) -> dict[str, Any] | None:
    """The last recorded outcome if the daemon has not published it yet."""
    try:
        outcome = json.loads((Path(state_dir) / OUTCOME).read_text())
        seen = (Path(state_dir) / ANNOUNCED).read_text().strip() \
            if (Path(state_dir) / ANNOUNCED).exists() else ""
    except (OSError, ValueError):
        return None
    return outcome if isinstance(outcome, dict) and outcome.get("id") != seen else None


def mark_announced(state_dir: Path, outcome: dict[str, Any]) -> None:
    atomic_write(Path(state_dir) / ANNOUNCED, str(outcome.get("id")) + "\n")
