"""Fixtures shared by every test area."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.devtools.broker import LocalBroker

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / ".cache" / "models"


@pytest.fixture
def broker() -> Iterator[LocalBroker]:
    """A real Mosquitto on a free loopback port, stopped after the test."""
    with LocalBroker() as b:
        yield b


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """Where `make setup` put the test models (scripts/fetch-test-models)."""
    if not (MODELS / "pose_detection.tflite").is_file():
        pytest.fail("test models missing: run `make setup` (scripts/fetch-test-models)")
    return MODELS
