"""`ronda clips export` / `list`: clips across segment boundaries play with the expected
duration, gaps are reported, unsafe outputs are refused, exit codes are as documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from recorder_testkit import fill_store

from firmware.cli import main
from firmware.commands import clips
from recorder import probe
from recorder.store import Limits, Store
from tests.waiting import all_of

T0 = 1_795_000_000.0  # a fixed moment (2026-11-18 UTC)


@pytest.fixture
def store(tmp_path: Path, segment_files: list[Path]) -> Path:
    """Camera `gate`: 6 s of footage, a 3 s hole, 3 s more; camera `lane`: 4 s; an event
    protecting 2 s of both."""
    root = tmp_path / "rec"
    s = Store(root, Limits(quota=2**30))
    s.open()
    fill_store(s, segment_files, "gate", [T0 + i for i in (0, 1, 2, 3, 4, 5, 9, 10, 11)],
               tmp_path)
    fill_store(s, segment_files, "lane", [T0 + i for i in range(4)], tmp_path)
    s.protect("ev-7", T0 + 1.2, T0 + 2.8, [])
    s.close()
    return root


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["clips", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_across_boundaries_plays_with_expected_duration(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gate.mp4"
    code, text, _ = run(capsys, "export", "--store", store, "--camera", "gate",
                        "--from", T0 + 0.5, "--to", T0 + 4.5, "-o", out)
    assert code == clips.EXIT_OK, text
    length = probe.container_duration(out)
    assert length is not None and abs(length - 4.0) <= 1.0 + 0.05, length
    assert probe.decodes(out)
    assert not list(tmp_path.glob(".*.part"))


def test_gap_is_reported_and_exit_code_says_partial(
        store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gap.mp4"
    code, text, _ = run(capsys, "export", "--store", store, "--camera", "gate",
                        "--from", T0, "--to", T0 + 12, "-o", out, "-q")
    assert code == clips.EXIT_PARTIAL
    assert "no footage" in text and "(3 s)" in text
    length = probe.container_duration(out)
    assert length is not None and abs(length - 9.0) <= 1.05, length  # the hole is skipped


def test_no_footage_writes_nothing(store: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "none.mp4"
    code, text, _ = run(capsys, "export", "--store", store, "--camera", "gate",
                        "--from", T0 + 100, "--to", T0 + 200, "-o", out)
    assert code == clips.EXIT_NO_FOOTAGE
    assert "no footage at all" in text
    assert not out.exists()


def test_refusals(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["export", "--store", store, "--camera", "gate", "--from", T0, "--to", T0 + 2]
    existing = tmp_path / "exists.mp4"
    existing.write_bytes(b"keep me")
    code, _, err = run(capsys, *args, "-o", existing)
    assert code == clips.EXIT_REFUSED and "--force" in err
    assert existing.read_bytes() == b"keep me"

    elsewhere = tmp_path / "elsewhere.mp4"
    link = tmp_path / "link.mp4"
    os.symlink(elsewhere, link)
    code, _, err = run(capsys, *args, "-o", link)
    assert code == clips.EXIT_REFUSED and "symlink" in err
    assert not elsewhere.exists()

    code, _, err = run(capsys, *args, "-o", store / "gate" / "x.mp4")
    assert code == clips.EXIT_REFUSED and "inside the recordings store" in err

    code, _, err = run(capsys, *args, "-o", tmp_path / "missing-dir" / "x.mp4")
    assert code == clips.EXIT_REFUSED

    code, _, _ = run(capsys, *args, "-o", existing, "--force", "-q")
    assert code == clips.EXIT_OK
    assert probe.decodes(existing)


def test_event_export_one_file_per_camera(store: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    outdir = tmp_path / "usb"
    outdir.mkdir()
    code, text, _ = run(capsys, "export", "--store", store, "--event", "ev-7", "-o", outdir)
    assert code == clips.EXIT_OK, text
    for camera in ("gate", "lane"):
        clip = outdir / f"ev-7-{camera}.mp4"
        assert probe.decodes(clip)
    code, _, err = run(capsys, "export", "--store", store, "--event", "nope", "-o", outdir)
    assert code == clips.EXIT_NO_FOOTAGE and "no protected event" in err
    code, _, err = run(capsys, "export", "--store", store, "--event", "ev-7",
                       "-o", outdir / "one.mp4")
    assert code == clips.EXIT_REFUSED and "2 cameras" in err


def test_list_shows_spans_gaps_and_clips(store: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, text, _ = run(capsys, "list", "--store", store)
    assert code == 0
    assert "gate: 9 segments" in text and "lane: 4 segments" in text
    gate = text.split("gate:")[1].split("lane:")[0]
    assert gate.count("->") == 2  # two spans around the hole
    assert "ev-7" in text and "all cameras" in text


def test_usage_errors(store: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(capsys, "export", "--store", store, "--camera", "gate", "-o",
                     tmp_path / "x.mp4")
    assert code == clips.EXIT_USAGE
    with pytest.raises(SystemExit) as exc:
        main(["clips", "export", "--store", str(store), "--camera", "gate", "--from", "noon",
              "--to", "1", "-o", "x.mp4"])
    assert exc.value.code == clips.EXIT_USAGE
    code, _, err = run(capsys, "list", "--store", tmp_path / "nothing")
    assert code == clips.EXIT_ERROR and "no recordings index" in err


def test_pinned_segments_outlive_retention(store: Path) -> None:
    from recorder.export import pinned
    from recorder.index import Index

    s = Store(store, Limits(quota=2**30))
    s.open()
    assert s.index is not None
    segments = s.index.segments("lane")
    with pinned(store, segments) as paths:
        s.delete(segments[:2])  # retention strikes mid-export
        assert not (store / segments[0].path).exists()
        assert all_of(paths, probe.decodes, "exported files")
        pins = list(store.glob(".export-*"))
        assert len(pins) == 1
        s.recover()  # a daemon restart meanwhile leaves a live export's pins alone
        assert pins[0].exists()
    assert not list(store.glob(".export-*"))
    s.close()
    index = Index(store / Index.FILENAME, readonly=True)
    assert len(index.segments("lane")) == 2
    index.close()


def test_chatty_ffmpeg_does_not_stall_the_export(store: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """ffmpeg's stderr is not a pipe read after exit: 200 KB of warnings (a damaged
    segment in a long export) would fill it and stall ffmpeg and the export forever."""
    import threading

    from recorder.export import ExportError, export, plan
    from recorder.index import Index

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ffmpeg"
    fake.write_text("#!/bin/sh\n"
                    "head -c 200000 /dev/zero | tr '\\0' 'w' >&2\n"
                    "echo >&2; echo 'the real error' >&2\n"
                    "echo out_time_us=1000000\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    index = Index(store / Index.FILENAME, readonly=True)
    the_plan = plan(index, "gate", T0, T0 + 3)
    index.close()
    result: list[BaseException] = []

    def run_export() -> None:
        try:
            export(store, the_plan, tmp_path / "out.mp4")
        except BaseException as exc:
            result.append(exc)

    worker = threading.Thread(target=run_export, daemon=True)
    worker.start()
    worker.join(15)
    assert not worker.is_alive(), "export stalled on ffmpeg's stderr"
    [error] = result
    assert isinstance(error, ExportError) and "the real error" in str(error)
    assert not (tmp_path / "out.mp4").exists()
