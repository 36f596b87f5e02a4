"""Helpers of the recorder tests: waiting, and checking a store against its invariants."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

from recorder.store import INCOMING, SUFFIX


def rows(root: Path) -> list[tuple]:
    """(id, camera, path, start, end, bytes) of every segment row, read-only."""
    db = sqlite3.connect(f"file:{root / 'index.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute("SELECT id, camera, path, start, end, bytes FROM segment "
                               "ORDER BY start"))
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def segment_count(root: Path) -> int:
    if not (root / "index.sqlite3").exists():
        return 0
    return len(rows(root))


def placed_files(root: Path) -> set[str]:
    """Segment files in hour directories, relative to the store root."""
    return {str(p.relative_to(root)) for p in root.glob(f"*/*/*/*{SUFFIX}")}


def incoming_files(root: Path) -> list[Path]:
    return sorted(root.glob(f"*/{INCOMING}/*"))


def all_video_bytes(root: Path) -> int:
    """Bytes of every segment file, open ones included (what the disk holds). Walks
    with os.walk, which shrugs off directories the recorder removes meanwhile."""
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(directory, name)).st_size
    return total


def assert_index_matches_disk(root: Path, allow_empty: bool = False) -> list[tuple]:
    """Every row has its file with the stated size; every file has its row; nothing is
    left in `.incoming` or as a garbage row. Returns the rows, which must not be none
    unless `allow_empty` (an empty index matches an empty disk, and proves nothing)."""
    found = rows(root)
    assert found or allow_empty, f"no segment indexed under {root}"
    indexed = {r[2] for r in found}
    on_disk = placed_files(root)
    assert indexed == on_disk, (f"rows without files: {sorted(indexed - on_disk)[:5]}, "
                                f"files without rows: {sorted(on_disk - indexed)[:5]}")
    for _, _, path, start, end, size in found:
        assert (root / path).stat().st_size == size, path
        assert end > start, path
    assert incoming_files(root) == []
    db = sqlite3.connect(root / "index.sqlite3")
    try:
        assert db.execute("SELECT COUNT(*) FROM garbage").fetchone()[0] == 0
    finally:
        db.close()
    return found


def undecodable(paths: list[Path]) -> list[Path]:
    """The files among `paths` that ffmpeg cannot decode cleanly (one ffmpeg for all,
    then one per file only if that one complains)."""
    if not paths:
        return []
    from recorder import probe

    args = ["ffmpeg", "-nostdin", "-v", "error"]
    for path in paths:
        args += ["-i", str(path)]
    for i in range(len(paths)):
        args += ["-map", f"{i}:v:0", "-f", "null", "-"]
    out = subprocess.run(args, capture_output=True, timeout=60, check=False)
    if out.returncode == 0 and not out.stderr.strip():
        return []
    return [p for p in paths if not probe.decodes(p)]


def fill_store(store, segment_files: list[Path], camera: str, starts: list[float],
               tmp: Path) -> list:
    """Commit copies of `segment_files` (cycled) as `camera`'s segments starting at
    `starts` (1 s each) into an open Store. Returns the Segments."""
    import shutil

    done = []
    incoming = store.incoming(camera)
    incoming.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(starts):
        src = segment_files[i % len(segment_files)]
        staged = incoming / f"copy-{i:06d}.mp4"
        shutil.copyfile(src, staged)
        done.append(store.commit(camera, staged, start, start + 1.0))
    return done
