"""Fixtures shared by every test area."""

from __future__ import annotations

import inspect
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.broker import LocalBroker
from tests.shared_broker import SESSION_BROKER_CONFIG, SharedBroker

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / ".cache" / "models"


@pytest.fixture(scope="session")
def session_broker() -> Iterator[LocalBroker]:
    """The one real Mosquitto of the test run (on a free loopback port): tests reach it
    through `broker`, never stop it."""
    with LocalBroker(extra_config=SESSION_BROKER_CONFIG) as b:
        yield b


@pytest.fixture
def broker(session_broker: LocalBroker, request: pytest.FixtureRequest) -> SharedBroker:
    """The session's broker with a topic prefix of this test's own (tests/shared_broker.py).
    A test that stops, restarts or reconfigures a broker starts its own LocalBroker."""
    if session_broker.proc is None or session_broker.proc.poll() is not None:
        session_broker.start()  # someone killed it: one failure, not a cascade
    return SharedBroker.for_test(session_broker, request.node.name)


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Where `make setup` put the test models (scripts/fetch-test-models)."""
    if not (MODELS / "pose_detection.tflite").is_file():
        pytest.fail("test models missing: run `make setup` (scripts/fetch-test-models)")
    return MODELS


# -- the fast lane -------------------------------------------------------------------------
# `make test-fast` runs `pytest -m "not integration"`: units only, no broker, no ffmpeg, no
# child daemon. Rather than trusting every test to carry a marker, a test is marked
# `integration` here when it is marked `slow` (or fuzzes thousands of examples), or uses a
# fixture known to start real parts, or when its module or one of its fixtures names a
# tool that starts them. A new
# test that starts ffmpeg or Mosquitto is therefore out of the fast lane without anyone
# remembering to mark it; a module that needs the opposite says `pytestmark =
# pytest.mark.unit` (checked: a unit test must not use the fixtures below).
INTEGRATION_FIXTURES = {"broker", "session_broker", "rtsp_camera", "scene_file", "scene", "live",
                        "segment_files",
                        "recorder_factory", "notify_socket", "wheelhouse", "make_wheel",
                        "committed_source", "test_cache"}
FAST_MAX_EXAMPLES = 200  # hypothesis tests asking for more are left to the full suite
INTEGRATION_WORDS = re.compile(
    r"\b(ffmpeg|ffprobe|gst-launch|mosquitto|LocalBroker|RtspTestCamera|rtsp_camera"
    r"|sys\.executable|chromium|debootstrap|chroot|qemu|losetup|mkfs|StreamInput"
    r"|render_scene|FrameReader|decode_file|synthetic|WebNode)\b")


def _names_real_parts(obj: object, seen: dict[object, bool]) -> bool:
    if obj not in seen:
        try:
            seen[obj] = bool(INTEGRATION_WORDS.search(inspect.getsource(obj)))
        except (OSError, TypeError):
            seen[obj] = False
    return seen[obj]


def integration_reason(item: pytest.Item, seen: dict[object, bool]) -> str:
    """Why `item` is an integration test ("" when it is a unit)."""
    if item.get_closest_marker("slow"):
        return "marked slow"
    function = getattr(item, "function", None)
    examples = getattr(getattr(function, "_hypothesis_internal_use_settings", None),
                       "max_examples", 0)
    if examples > FAST_MAX_EXAMPLES:  # a fuzz run of thousands of cases: CI's, not ours
        return f"fuzzes {examples} examples"
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & INTEGRATION_FIXTURES:
        return "uses " + ", ".join(sorted(fixtures & INTEGRATION_FIXTURES))
    module = getattr(item, "module", None)
    if module is not None and _names_real_parts(module, seen):
        return f"{Path(module.__file__).name} starts real parts"
    info = getattr(item, "_fixtureinfo", None)
    for name in sorted(fixtures):
        for fixturedef in (info.name2fixturedefs.get(name, ()) if info else ()):
            if _names_real_parts(fixturedef.func, seen):
                return f"fixture {name} starts real parts"
    return ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seen: dict[object, bool] = {}
    for item in items:
        reason = integration_reason(item, seen)
        if item.get_closest_marker("unit"):
            if reason.startswith("uses "):
                raise pytest.UsageError(f"{item.nodeid} is marked unit but {reason}")
            continue
        if reason and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)


# In the fast lane (RONDA_FAST_LANE=1, set by `make test-fast`) the real parts are not even
# on the PATH: stand-ins for them record which test called them and fail, and the run
# fails at its end naming those tests, so a test the marking above missed is found the
# first time it runs there instead of quietly making the fast lane slow.
REAL_PARTS = ("ffmpeg", "ffprobe", "mosquitto", "gst-launch-1.0")


def install_fast_lane_guard(bin_dir: Path) -> Path:
    """Put stand-ins for REAL_PARTS in `bin_dir`, first on the PATH; returns their log."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / "calls.log"
    for name in REAL_PARTS:
        stub = bin_dir / name
        stub.write_text("#!/bin/sh\n"
                        f'echo "{name} ${{PYTEST_CURRENT_TEST:-?}}" >> "{log}"\n'
                        f'echo "{name}: not in the fast lane (the test is integration)" >&2\n'
                        "exit 127\n")
        stub.chmod(0o755)
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    return log


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("RONDA_FAST_LANE") == "1":
        config._ronda_fast_lane_log = install_fast_lane_guard(  # type: ignore[attr-defined]
            Path(tempfile.mkdtemp(prefix="ronda-fast-lane-")))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    log = getattr(session.config, "_ronda_fast_lane_log", None)
    if log is None:
        return
    calls = sorted(set(log.read_text().splitlines())) if log.exists() else []
    shutil.rmtree(log.parent, ignore_errors=True)
    if not calls:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line("fast lane: these tests started real parts; mark them "
                            "integration (or fix tests/conftest.py's marking):", red=True)
        for call in calls:
            reporter.write_line(f"  {call}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
