"""The live relay's MP4 handling on real ffmpeg output: short fragments, keyframes found
in the fragments' sample flags, the codec string for Media Source Extensions."""

from __future__ import annotations

import subprocess
from pathlib import Path

from web_kit import wait_for

from drivers.cameras.base import StreamInput
from drivers.process import spawn, terminate
from web.live import LiveHub, codec_of, live_args, read_box, starts_with_keyframe


def _h264(tmp_path: Path) -> Path:
    clip = tmp_path / "gop10.mp4"  # 10 fps, a keyframe every 10 frames: one per second
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
                    "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-g", "10",
                    "-sc_threshold", "0", "-bf", "0", str(clip)], check=True, timeout=60)
    return clip


def test_fragments_are_short_and_keyframes_are_found(tmp_path):
    proc = spawn(live_args(StreamInput(url=str(_h264(tmp_path)))), stdout=subprocess.PIPE)
    kinds, keys = [], []
    try:
        while (box := read_box(proc.stdout)) is not None:
            kind, data = box
            kinds.append(kind)
            if kind == b"moov":
                family, codec = codec_of(data)
                assert family == "h264" and codec.startswith("avc1.")
            if kind == b"moof":
                keys.append(starts_with_keyframe(data))
    finally:
        terminate(proc)
    assert kinds[:2] == [b"ftyp", b"moov"]
    # 4 s in fragments of about 0.2 s (whole frames), a keyframe-led one every second
    assert len(keys) >= 15, keys
    assert keys[:15] == ([True] + [False] * 4) * 3, keys


def test_a_late_viewer_starts_at_the_last_keyframe(tmp_path):
    clip = _h264(tmp_path)
    hub = LiveHub(lambda c: StreamInput(url=str(clip), options={"re": None,
                                                                  "stream_loop": -1}), 3)
    first: list[object] = []
    late: list[object] = []
    try:
        assert hub.join("gang", first.append) is not None
        wait_for(lambda: sum(isinstance(x, bytes) for x in first) >= 8, 30, "fragments")
        assert hub.join("gang", late.append) is not None
        wait_for(lambda: len(late) >= 3, 10, "the late viewer's start")
        assert late[0]["type"] == "init" and late[1][4:8] == b"ftyp"
        assert starts_with_keyframe(late[2][:late[2].index(b"mdat") - 4])
        assert hub.viewers() == 2
        assert hub.join("gang", lambda x: None) is not None
        assert hub.join("gang", lambda x: None) is None  # the limit (3) is reached
    finally:
        hub.close()
