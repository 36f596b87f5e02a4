"""`ronda detect` on photos and on a clip."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from devtools.scene import render_scene
from firmware.cli import main


def test_photo_mode_marks_alerts_and_writes_boxes(tmp_path: Path, models_dir: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    model = str(models_dir / "pose_detection.tflite")
    Image.fromarray(data.astronaut()).save(tmp_path / "person.jpg")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.jpg")
    out = tmp_path / "boxed.jpg"
    assert main(["detect", "--model", model, str(tmp_path / "person.jpg"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "person" in text and "ALERT" in text
    assert out.read_bytes()[:2] == b"\xff\xd8"
    assert main(["detect", "--model", model, str(tmp_path / "coffee.jpg")]) == 0
    assert "ALERT" not in capsys.readouterr().out


def test_clip_mode_prints_one_alert(tmp_path: Path, models_dir: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    clip = render_scene(tmp_path / "c.mp4", seconds=8, size=(640, 360), fps=10, walk=(1.0, 6.0))
    snaps = tmp_path / "snaps"
    assert main(["detect", "--model", str(models_dir / "pose_detection.tflite"), str(clip),
                 "--snapshots", str(snaps)]) == 0
    text = capsys.readouterr().out
    assert text.count(" start ") == 1 and text.count(" end ") == 1
    assert "alerts 1" in text
    assert len(list(snaps.glob("*-start.jpg"))) == 1 and len(list(snaps.glob("*-end.jpg"))) == 1


def test_without_a_model_it_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--model"):
        main(["detect", str(tmp_path / "x.jpg")])
