"""Fixtures of the image area: wheels of ronda built from this repo's committed code.

`git archive HEAD` is the source (what a release would be built from, not whatever is
half-edited in the work tree). Third-party dependency wheels are built once per
setup.py, extras, Python and machine and cached so that later runs install offline.

The cache (`test_cache`: dependency wheels, the debootstrap tree of test_image_build)
lives outside the repo, so that CI, which runs in a fresh clone each time, finds it
warm on the same machine: $RONDA_TEST_CACHE, else $XDG_CACHE_HOME/ronda-tests, else
~/.cache/ronda-tests. Entries are keyed by what they are made from (a changed input
makes a new entry) and built under a lock (two runs at once build an entry once).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    """Where slow-to-make test inputs are kept across clones (see the module doc)."""
    if os.environ.get("RONDA_TEST_CACHE"):
        return Path(os.environ["RONDA_TEST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ronda-tests"


@contextlib.contextmanager
def cache_lock(entry: Path) -> Iterator[None]:
    """Hold an exclusive lock for building `entry` (other runs wait, then reuse it)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.with_name(entry.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def test_cache() -> Path:
    """The cache directory (made if missing)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def cache_entry_lock() -> Callable[[Path], contextlib.AbstractContextManager[None]]:
    """`with cache_entry_lock(entry):` build `entry` of the test cache alone."""
    return cache_lock


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
def wheelhouse(committed_source: Path, test_cache: Path) -> Path:
    """Dependency wheels of ronda[detect] (what a node with detection installs), for
    this Python and machine."""
    inputs = b"\0".join([(committed_source / "setup.py").read_bytes(), b"[detect]",
                         sys.implementation.cache_tag.encode(), platform.machine().encode()])
    key = hashlib.sha256(inputs).hexdigest()[:12]
    house = test_cache / "wheelhouse" / key
    if (house / ".complete").exists():
        return house
    with cache_lock(house):
        if not (house / ".complete").exists():  # another run may have built it meanwhile
            partial = house.with_name(house.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(partial),
                            f"{committed_source}[detect]"], check=True)
            for own in partial.glob("ronda-*.whl"):  # only the dependencies are kept
                own.unlink()
            (partial / ".complete").touch()
            shutil.rmtree(house, ignore_errors=True)
            partial.rename(house)
    return house


@pytest.fixture(scope="session")
def make_wheel(committed_source: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Callable[..., Path]]:
    """`make_wheel("0.2.0", patch=fn)`: a ronda wheel of HEAD with that version; `patch`
    may edit the exported source first (to make a broken release).
    `make_wheel.soon("0.3.0", patch=fn)` starts that build in the background and returns
    a Future (the wheel builds while the test installs another release)."""
    out = tmp_path_factory.mktemp("wheels")
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="make-wheel")

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

    def soon(version: str, patch: Callable[[Path], None] | None = None) -> Future[Path]:
        return pool.submit(build, version, patch)

    build.soon = soon  # type: ignore[attr-defined]
    yield build
    pool.shutdown(wait=True)


# What a Raspberry Pi image is: Debian bookworm's CPython 3.11 (glibc 2.36) on aarch64.
PI_PLATFORMS = ("manylinux_2_36_aarch64", "manylinux_2_34_aarch64", "manylinux_2_28_aarch64",
                "manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64")
PI_EXTRAS = "detect,gpio"


@pytest.fixture(scope="session")
def pi_wheelhouse(committed_source: Path, test_cache: Path,
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dependency wheels of ronda[detect,gpio] for a Pi (aarch64, CPython 3.11), downloaded
    once from PyPI (binary wheels only: nothing is compiled for a foreign machine) and cached
    like `wheelhouse`."""
    inputs = b"\0".join([(committed_source / "setup.py").read_bytes(), PI_EXTRAS.encode(),
                         "\0".join(PI_PLATFORMS).encode(), b"cp311"])
    house = test_cache / "wheelhouse" / f"pi-{hashlib.sha256(inputs).hexdigest()[:12]}"
    if (house / ".complete").exists():
        return house
    with cache_lock(house):
        if not (house / ".complete").exists():
            own = tmp_path_factory.mktemp("pi-own-wheel")
            subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                            str(own), str(committed_source)], check=True)
            (wheel,) = own.glob("ronda-*.whl")
            partial = house.with_name(house.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            platforms = [arg for p in PI_PLATFORMS for arg in ("--platform", p)]
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(partial),
                            "--only-binary=:all:", *platforms, "--python-version", "3.11",
                            "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                            "--abi", "none", f"ronda[{PI_EXTRAS}] @ {wheel.as_uri()}"],
                           check=True)
            for ronda in partial.glob("ronda-*.whl"):  # only the dependencies are kept
                ronda.unlink()
            (partial / ".complete").touch()
            shutil.rmtree(house, ignore_errors=True)
            partial.rename(house)
    return house
