"""Fixtures of the web tests: one real node (`ronda run`: RTSP test camera, recorder,
alarm on mock pins, the web page over HTTPS) shared by the web tests (see web_kit)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web_kit import WebNode, wait_for


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebNode]:
    """One node for all web tests (start-up costs seconds; tests only read from it, and
    the alarm tests leave it quiet)."""
    web_node = WebNode(tmp_path_factory.mktemp("webnode"))
    try:
        wait_for(lambda: len(web_node.segments()) >= 4, 60, "four recorded segments")
        yield web_node
    finally:
        web_node.close()
