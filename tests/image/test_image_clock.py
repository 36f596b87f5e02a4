"""The clock check: a failed adjtimex(2) means "unknown", never "synchronised"."""

from __future__ import annotations

import ctypes

import pytest

from drivers import platform
from firmware.provision import doctor


class FakeLibc:
    """libc whose adjtimex answers `result` (as the kernel or a seccomp filter would)."""

    def __init__(self, result: int) -> None:
        self.result = result

    def adjtimex(self, _buf) -> int:
        return self.result


@pytest.mark.parametrize(("result", "synced"), [(-1, None), (5, False), (0, True), (4, True)])
def test_adjtimex_results(monkeypatch, result, synced):
    monkeypatch.setattr(ctypes, "CDLL", lambda *_a, **_k: FakeLibc(result))
    assert platform.clock_synced() is synced


def test_unknown_clock_is_a_warning_with_a_working_command(monkeypatch):
    monkeypatch.setattr(ctypes, "CDLL", lambda *_a, **_k: FakeLibc(-1))
    check = doctor.check_clock()
    assert check.status == "warn" and "unknown" in check.detail
    assert "timedatectl status" in check.hint


def test_this_machine_gives_an_answer_or_unknown():
    assert platform.clock_synced() in (True, False, None)
