"""Fixtures of the camera tests: the RTSP test camera."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.rtsp_camera import RtspTestCamera, scene_h264


@pytest.fixture(scope="session")
def scene_file():
    """The rendered scene (cached across runs)."""
    return scene_h264()


@pytest.fixture
def rtsp_camera(scene_file) -> Iterator[RtspTestCamera]:
    """A real RTSP camera (GStreamer) on a free loopback port, no auth."""
    with RtspTestCamera() as cam:
        yield cam
