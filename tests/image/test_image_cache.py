"""The image tests' cache: outside the repo (CI runs in a fresh clone each time, on the
same machine), overridable, and built by one run at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TRY_LOCK = ("import fcntl, sys\n"
            "fh = open(sys.argv[1], 'w')\n"
            "try:\n"
            "    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
            "except BlockingIOError:\n"
            "    sys.exit(3)\n")


def test_cache_lives_outside_the_repo(test_cache):
    assert test_cache.is_dir()
    assert test_cache != REPO and REPO not in test_cache.parents
    if os.environ.get("RONDA_TEST_CACHE"):
        assert test_cache == Path(os.environ["RONDA_TEST_CACHE"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        assert test_cache == Path(base) / "ronda-tests"


def test_an_entry_is_built_by_one_process_at_a_time(tmp_path, cache_entry_lock):
    entry = tmp_path / "cache" / "wheelhouse" / "abc"
    lock_file = entry.with_name("abc.lock")

    def other_process_may_build() -> bool:
        code = subprocess.run([sys.executable, "-c", TRY_LOCK, str(lock_file)]).returncode
        assert code in (0, 3)
        return code == 0

    with cache_entry_lock(entry):
        assert not other_process_may_build()
    assert other_process_may_build()
