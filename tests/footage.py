"""What a running node has recorded so far, read the way an outside reader must: from the
recorder's index, read-only, while the recorder writes it."""

from __future__ import annotations

from pathlib import Path

from recorder.index import Index, IndexError_, Segment


def recorded_segments(root: Path, camera: str = "gate") -> list[Segment]:
    """The segments of `camera` in the recordings index under `root` ([] before the
    recorder has made the index or its tables)."""
    db = root / Index.FILENAME
    if not db.is_file():
        return []
    try:
        index = Index(db, readonly=True)
    except IndexError_:  # the recorder has not created its tables yet
        return []
    try:
        return index.segments(camera)
    finally:
        index.close()
