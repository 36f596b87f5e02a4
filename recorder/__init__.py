"""Continuous recording into a crash-safe ring buffer of segments, with protected event clips.

`Recorder` runs one ffmpeg per camera (stream copy into fragmented MP4 segments) and keeps
the `Store` (files + SQLite index) within its quotas; `export` joins segments into clips.
"""

from recorder.index import Clip, Index, Segment
from recorder.recorder import Recorder
from recorder.store import Limits, StorageFault, Store

__all__ = ["Clip", "Index", "Limits", "Recorder", "Segment", "StorageFault", "Store"]
