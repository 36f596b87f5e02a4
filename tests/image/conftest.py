"""Fixtures of the image area: wheels of ronda built from this repo's committed code.

`git archive HEAD` is the source (what a release would be built from, not whatever is
half-edited in the work tree). Third-party dependency wheels are built once per
setup.py and cached under .cache/wheelhouse so that later runs install offline.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"


def export_source(dest: Path) -> Path:
    """The committed tree of this repo, unpacked into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def set_version(source: Path, version: str) -> None:
    for rel, pattern, repl in (("setup.py", r'version="[^"]+"', f'version="{version}"'),
                               ("firmware/__init__.py", r'__version__ = "[^"]+"',
                                f'__version__ = "{version}"')):
        path = source / rel
        text, count = re.subn(pattern, repl, path.read_text())
        assert count == 1, f"cannot set the version in {rel}"
        path.write_text(text)


@pytest.fixture(scope="session")
def committed_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_source(tmp_path_factory.mktemp("source") / "ronda")


@pytest.fixture(scope="session")
def wheelhouse(committed_source: Path) -> Path:
    """Dependency wheels of ronda[detect] (what a node installs; the daemon imports
    cv2 and tflite_runtime at start)."""
    key = hashlib.sha256((committed_source / "setup.py").read_bytes() + b"[detect]"
                         ).hexdigest()[:12]
    house = CACHE / "wheelhouse" / key
    if not (house / ".complete").exists():
        house.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(house),
                        f"{committed_source}[detect]"], check=True)
        for own in house.glob("ronda-*.whl"):  # only the dependencies are kept
            own.unlink()
        (house / ".complete").touch()
    return house


@pytest.fixture(scope="session")
def make_wheel(committed_source: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Callable[..., Path]:
    """`make_wheel("0.2.0", patch=fn)`: a ronda wheel of HEAD with that version; `patch`
    may edit the exported source first (to make a broken release)."""
    out = tmp_path_factory.mktemp("wheels")

    def build(version: str, patch: Callable[[Path], None] | None = None) -> Path:
        src = tmp_path_factory.mktemp(f"src-{version}") / "ronda"
        shutil.copytree(committed_source, src)
        set_version(src, version)
        if patch:
            patch(src)
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out),
                        str(src)], check=True, capture_output=True)
        (wheel,) = out.glob(f"ronda-{version}-*.whl")
        return wheel

    return build
