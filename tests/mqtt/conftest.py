"""Fixtures of the MQTT tests: recording subscribers and a commanding key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mqtt_helpers import Recorder

from mqtt.signing import generate_keypair


@pytest.fixture
def recorder_factory() -> Iterator[Callable[..., Recorder]]:
    """Make started `Recorder`s; all are stopped after the test."""
    made: list[Recorder] = []

    def make(port: int, topics: str | list[str] = "ronda/v1/#", **kw: Any) -> Recorder:
        rec = Recorder(port, topics, **kw).start()
        made.append(rec)
        return rec

    yield make
    for rec in made:
        rec.stop()


@pytest.fixture(scope="session")
def keypair() -> tuple[Any, str]:
    """A commanding key: (private key, base64 public key)."""
    return generate_keypair()
