"""Fixtures of the recorder tests: a rendered scene played as a live camera."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.scene import render_scene
from drivers.cameras.base import StreamInput


@pytest.fixture(scope="session")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 s 320x240 15 fps H.264 street scene, keyframe every second."""
    out = tmp_path_factory.mktemp("scene") / "scene.mp4"
    return render_scene(out, seconds=10, size=(320, 240), fps=15, walk=(2.0, 8.0))


@pytest.fixture(scope="session")
def live(scene: Path) -> StreamInput:
    """The scene played in real time, looped forever: a live camera for ffmpeg."""
    return StreamInput(url=str(scene), options={"re": None, "stream_loop": -1})


@pytest.fixture(scope="session")
def segment_files(scene: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The scene cut by the recorder's own ffmpeg command into ten 1 s segments."""
    import subprocess

    from recorder.camera import record_args

    out = tmp_path_factory.mktemp("segments")
    subprocess.run(record_args(StreamInput(url=str(scene)), out / "s-%03d.mp4", 1),
                   check=True, capture_output=True, timeout=60)
    files = sorted(out.glob("s-*.mp4"))
    assert len(files) >= 9, files
    return files
