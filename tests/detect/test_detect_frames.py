"""The frame reader: real ffmpeg into preallocated buffers, restarts, stalls, presets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from drivers.cameras.base import StreamInput
from inference.frames import Frame, FramePool, FrameReader, board_hwaccel, ffmpeg_args
from tests.waiting import all_of, wait_for

TESTSRC = StreamInput("testsrc2=size=320x240:rate=10:duration=2", {"f": "lavfi"})




def test_frames_arrive_at_size_and_rate_in_reused_buffers() -> None:
    states: list[tuple[str, str]] = []
    reader = FrameReader("t", TESTSRC, 160, 90, fps=5, drop_when_full=False,
                         on_state=lambda s, r: states.append((s, r)), restart_delay_s=600)
    buffers = {id(b) for b in reader.pool._free}
    reader.start()
    frames = []
    wait_for(lambda: reader.streams_ended and not reader.pool.pending()
             if _drain(reader, frames) else False, 20, "the stream's end, every frame read")
    reader.stop()
    assert len(frames) == 10  # 2 s at 5 fps
    assert all_of(frames, lambda frame: frame[0].shape == (135, 160), "frames")
    assert {b for _, b in frames} <= buffers  # no buffer allocated per frame
    assert frames[0][0][:90].std() > 10  # a real picture in the Y plane
    assert states[0] == ("online", "")


def _drain(reader: FrameReader, out: list) -> bool:
    while (frame := reader.pool.get()) is not None:
        out.append((frame.yuv.copy(), id(frame.yuv)))
        reader.pool.release(frame)
    return True


def test_stream_that_ends_is_restarted() -> None:
    states: list[str] = []
    reader = FrameReader("t", StreamInput("testsrc2=size=160x90:rate=10:duration=0.5",
                                          {"f": "lavfi"}),
                         160, 90, fps=10, on_state=lambda s, r: states.append(s),
                         restart_delay_s=0.1)
    reader.start()
    got: list = []
    wait_for(lambda: _drain(reader, got) and reader.streams_ended >= 2, 20, "two streams")
    reader.stop()
    assert reader.process.restarts >= 1
    assert states[:3] == ["online", "offline", "online"]


def test_unreadable_source_is_offline_with_reason(tmp_path: Path) -> None:
    states: list[tuple[str, str]] = []
    reader = FrameReader("t", StreamInput(str(tmp_path / "missing.mp4")), 160, 90,
                         on_state=lambda s, r: states.append((s, r)), restart_delay_s=600)
    reader.start()
    wait_for(lambda: bool(states), 20, "a state report")
    reader.stop()
    state, reason = states[0]
    assert state == "offline" and "No such file" in reason


def test_silent_source_stalls_and_goes_offline(tmp_path: Path) -> None:
    fifo = tmp_path / "never.ts"
    os.mkfifo(fifo)
    states: list[tuple[str, str]] = []
    reader = FrameReader("t", StreamInput(str(fifo)), 160, 90, stall_after_s=1.0,
                         on_state=lambda s, r: states.append((s, r)), restart_delay_s=600)
    reader.start()
    wait_for(lambda: bool(states), 15, "a state report")
    reader.stop()
    assert states[0] == ("offline", "no progress for 1 s")


def test_pool_drops_the_oldest_frame_when_the_consumer_is_behind() -> None:
    pool = FramePool(4, 2, count=2, drop_when_full=True)
    for seq in (1, 2, 3):
        buf = pool.acquire(0.1)
        assert buf is not None
        pool.put(Frame(seq, 0.0, buf, 4, 2))
    assert pool.dropped == 1
    assert [pool.get().seq, pool.get().seq] == [2, 3]
    waiting = FramePool(4, 2, count=1, drop_when_full=False)
    waiting.put(Frame(1, 0.0, waiting.acquire(0.1), 4, 2))
    assert waiting.acquire(0.05) is None  # waits instead of dropping


def test_ffmpeg_command_and_hardware_presets(tmp_path: Path) -> None:
    args = ffmpeg_args(StreamInput("rtsp://u:p@cam/sub", {"rtsp_transport": "tcp"}),
                       640, 360, 5, "v4l2m2m")
    assert args[args.index("-c:v") + 1] == "h264_v4l2m2m"
    assert args.index("-c:v") < args.index("-rtsp_transport") < args.index("-i")
    assert "fps=5,scale=640:360" in args[args.index("-vf") + 1]
    assert args[-3:] == ["-f", "rawvideo", "pipe:1"] and "yuv420p" in args
    assert "-c:v" not in ffmpeg_args(StreamInput("x"), 64, 64, 5, "none")
    model = tmp_path / "model"
    model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.4\x00")
    assert board_hwaccel(model) == "v4l2m2m"
    model.write_bytes(b"Raspberry Pi 5 Model B Rev 1.0\x00")
    assert board_hwaccel(model) == "none"  # the Pi 5 has no H.264 decoder
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\x00")
    assert board_hwaccel(model) == "jetson"
    assert board_hwaccel(tmp_path / "absent") == "none"


def test_odd_sizes_are_refused() -> None:
    try:
        FrameReader("t", TESTSRC, 161, 90)
    except ValueError as exc:
        assert "even" in str(exc)
    else:
        raise AssertionError("odd width accepted")
    assert np.empty(0).size == 0


def test_failing_hardware_decoder_falls_back_to_software() -> None:
    reader = FrameReader("t", TESTSRC, 160, 90, fps=5, hwaccel="v4l2m2m",
                         restart_delay_s=0.1)
    reader.start()
    try:
        wait_for(lambda: reader.frames > 0, 30, "a frame")
    finally:
        reader.stop()
    assert reader.decoder == "none" and reader.process.restarts >= 2
