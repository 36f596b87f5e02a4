"""The fast lane (`make test-fast`, `-m "not integration"`) leaves out every test that starts
real parts, whoever wrote it and whether or not they marked it (tests/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import firmware.devtools.broker as broker_module
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
