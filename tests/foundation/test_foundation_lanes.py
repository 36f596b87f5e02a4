"""The fast lane (`make test-fast`, `-m "not integration"`) leaves out every test that starts
real parts, whoever wrote it and whether or not they marked it (tests/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import devtools.broker as broker_module
import tests.waiting as waiting
from tests.conftest import integration_reason


def item(fixtures=(), module=None, marks=(), function=None) -> SimpleNamespace:
    return SimpleNamespace(
        get_closest_marker=lambda name: name if name in marks else None,
        fixturenames=list(fixtures), module=module, function=function, _fixtureinfo=None)


def test_real_parts_are_integration() -> None:
    assert integration_reason(item(fixtures=["tmp_path", "broker"]), {}) == "uses broker"
    assert integration_reason(item(marks=["slow"]), {}) == "marked slow"
    # a module that starts Mosquitto: all of its tests are out of the fast lane
    assert "starts real parts" in integration_reason(item(module=broker_module), {})


def test_fuzzing_thousands_of_examples_is_left_to_the_full_suite() -> None:
    from hypothesis import given, settings, strategies

    @settings(max_examples=2000)
    @given(strategies.integers())
    def fuzz(n: int) -> None:
        pass

    assert integration_reason(item(function=fuzz), {}) == "fuzzes 2000 examples"


def test_units_stay_in_the_fast_lane(request: pytest.FixtureRequest) -> None:
    assert integration_reason(item(fixtures=["tmp_path"], module=waiting), {}) == ""
    assert request.node.get_closest_marker("integration") is None


def test_the_fast_lane_guard_records_and_refuses_real_parts(tmp_path, monkeypatch) -> None:
    import subprocess

    from tests.conftest import REAL_PARTS, install_fast_lane_guard

    tool = REAL_PARTS[0]  # (named indirectly: naming it would put this module out of the lane)

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the guard edits os.environ: restored after
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/x.py::test_y (call)")
    log = install_fast_lane_guard(tmp_path / "bin")
    result = subprocess.run([tool, "-version"], capture_output=True, text=True)
    assert result.returncode == 127 and "not in the fast lane" in result.stderr
    assert log.read_text() == f"{tool} tests/x.py::test_y (call)\n"
