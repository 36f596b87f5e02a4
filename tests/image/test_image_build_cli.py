"""image/build's command line: help that teaches, and refusals before any work."""

from __future__ import annotations

import subprocess
from pathlib import Path

BUILD = Path(__file__).resolve().parents[2] / "image" / "build"


def build(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BUILD), *args], capture_output=True, text=True, timeout=60)


def test_help_has_an_example():
    proc = build("--help")
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "--base" in proc.stdout and "--offline" in proc.stdout
    assert "--debian" in proc.stdout and "make image" in proc.stdout


def test_refusals_name_the_problem(tmp_path):
    assert "--base or --debian is required" in build().stderr
    assert "exclude each other" in build("--base", "x.img", "--debian").stderr
    assert "no such image" in build("--base", str(tmp_path / "nope.img")).stderr
    img = tmp_path / "base.img"
    img.write_bytes(b"\0" * 4096)
    proc = build("--base", str(img), "--journal", "sometimes")
    assert proc.returncode == 1 and "--journal" in proc.stderr
    proc = build("--base", str(img), "--board", "pc")
    assert proc.returncode == 1 and "--board: pi or none" in proc.stderr
    proc = build("--base", str(img), "--bogus")
    assert proc.returncode == 1 and "unknown option --bogus" in proc.stderr
