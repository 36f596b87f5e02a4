"""A killed `sudo ronda clips export` cannot leak disk: its pin directory is handed to the
store's owner (the daemon can remove it), dead pins are swept, and what pins hold is
counted in the recorder's figures."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from recorder.export import PINS, pinned, sweep_pins


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as `sudo ronda clips export`")
def test_a_root_export_leaves_pins_the_store_owner_can_remove(tmp_path):
    store = tmp_path / "recordings"
    store.mkdir()
    os.chown(store, 4242, 4242)  # the ronda user
    seg = store / "cam" / "a.mp4"
    seg.parent.mkdir()
    seg.write_bytes(b"x" * 4096)

    class Seg:
        path = "cam/a.mp4"

    with pinned(store, [Seg()]) as paths:
        pin_dir = paths[0].parent
        assert pin_dir.name.startswith(PINS)
        assert (pin_dir.stat().st_uid, pin_dir.stat().st_gid) == (4242, 4242)
        mode = pin_dir.stat().st_mode & 0o700
        assert mode == 0o700  # the owner (the daemon's user) may list and empty it
    assert not pin_dir.exists()


def test_pins_of_a_live_export_are_counted_and_dead_ones_swept(tmp_path):
    store = tmp_path / "recordings"
    live = store / f"{PINS}{os.getpid()}-abc"
    live.mkdir(parents=True)
    (live / "000000.mp4").write_bytes(b"y" * 1000)  # only the pin links it
    dead = store / f"{PINS}{dead_pid()}-xyz"
    dead.mkdir()
    (dead / "000000.mp4").write_bytes(b"z" * 500)
    counts = sweep_pins(store)
    assert counts == {"removed": 1, "stuck": 0, "pinned_bytes": 1000}
    assert live.exists() and not dead.exists()
