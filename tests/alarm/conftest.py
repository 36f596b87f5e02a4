"""Fixtures of the alarm tests; helpers live in alarm_kit."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alarm_kit import Node


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """Build (and later stop) alarm nodes: make_node(alarm={...}, gpio={...})."""
    nodes: list[Node] = []

    def make(start: bool = True, state_dir: Path | None = None, **kwargs: Any) -> Node:
        node = Node(state_dir or tmp_path / "state", **kwargs)
        nodes.append(node)
        return node.start() if start else node

    yield make
    for node in nodes:
        if node.started:
            node.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """An exception in any thread (an output worker, the alarm worker) fails the test."""
    for item in items:
        if "tests/alarm/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings(
                "error::pytest.PytestUnhandledThreadExceptionWarning"))
