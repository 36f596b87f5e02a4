"""Recording what cheap cameras really send: H.265 (main, 4:2:0) with a G.711 track, a video
clock that steps back, other clients joining the camera mid-recording, a camera slow to send
its first packet, a segment with no frame, a camera back after a failed attempt."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from recorder_testkit import assert_index_matches_disk, rows

from devtools.rtsp_camera import RtspTestCamera
from drivers.cameras.base import StreamInput
from drivers.cameras.probe import probe
from drivers.cameras.rtsp import input_options
from recorder import mp4
from recorder.camera import CameraRecorder
from recorder.export import export, plan
from recorder.index import Index
from recorder.recorder import Recorder
from recorder.store import Limits, Store
from tests.waiting import wait_for


@contextlib.contextmanager
def recording(root: Path, cameras: dict[str, StreamInput], **kwargs) -> Iterator[Recorder]:
    rec = Recorder(root, cameras, limits=Limits(quota=2**30, min_free=0), **kwargs)
    stop = threading.Event()
    thread = threading.Thread(target=rec.run, args=(stop,), kwargs={"interval_s": 0.2},
                              daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        stop.set()
        thread.join(30)


def segments_of(rec: Recorder, name: str) -> int:
    return rec.cameras[name].segments


@pytest.mark.timeout(120)
def test_h265_g711_camera_whose_clock_jumps_while_others_join(tmp_path: Path) -> None:
    """Two recorders of one H.265 + G.711 camera, video only and with audio, the second
    joining mid-recording, then a third client, and the camera's video clock steps back 2 s:
    no frame squeezed, every indexed duration is its frames' duration, the audio-less one
    asked for no audio, the other holds AAC."""
    with RtspTestCamera(codec="h265", audio="pcma", jump_after=5, jump_s=2) as cam:
        info = probe(StreamInput(cam.url, input_options(cam.url)))
        assert (info.codec, info.profile, info.pix_fmt) == ("hevc", "Main", "yuv420p")
        assert (info.audio, info.audio_rate) == ("pcm_alaw", 8000)
        source = StreamInput(cam.url, input_options(cam.url))
        with recording(tmp_path / "a", {"cam": source}, segment_s=1,
                       audio={"cam": False}) as video_only:
            wait_for(lambda: segments_of(video_only, "cam") >= 2, timeout=40,
                     what="two video-only segments")
            with recording(tmp_path / "b", {"cam": source}, segment_s=1,
                           audio={"cam": True}) as with_audio:
                wait_for(lambda: segments_of(with_audio, "cam") >= 2, timeout=40,
                         what="two segments with audio")
                cam.join(2.0)  # and another client, for both
                seen = segments_of(with_audio, "cam")
                wait_for(lambda: segments_of(with_audio, "cam") >= seen + 5, timeout=40,
                         what="five more segments, past the clock's jump")
            health = video_only.health()["cameras"]["cam"]
        assert health["audio"].startswith("not recorded: audio = off")
        assert with_audio.health()["cameras"]["cam"]["audio"] == "recorded (AAC)"
    for root, audio in ((tmp_path / "a", False), (tmp_path / "b", True)):
        found = assert_index_matches_disk(root)
        assert len(found) >= 5
        for _, _, path, start, end, _ in found:
            content = mp4.read(root / path)
            assert content.video is not None and content.video.frames > 0, path
            assert content.video.squeezed == 0, f"{path}: frames squeezed"
            assert end - start == pytest.approx(content.video.seconds, abs=0.01), path
            assert (content.audio is not None) == audio, path
            if audio:
                assert content.audio.codec == "mp4a"
        if audio:  # sound all along (the encoder's first frames may fall in one segment;
            # at the video clock's step, the audio of up to that step may be dropped)
            sound = [mp4.read(root / r[2]).audio.seconds for r in found]
            video = [mp4.read(root / r[2]).video.seconds for r in found]
            assert sum(video) + 1.5 > sum(sound) > 0.7 * sum(video), (sound, video)
            assert sum(s > 0 for s in sound) >= len(sound) // 2, sound
        # an export carries the sound too
        index = Index(root / Index.FILENAME, readonly=True)
        clip = export(root, plan(index, "cam", found[1][3], found[4][4]), root / "clip.mp4")
        index.close()
        streams = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                                  "stream=codec_name", "-of", "csv=p=0", str(clip)],
                                 capture_output=True, text=True, check=True).stdout.split()
        assert streams == (["hevc", "aac"] if audio else ["hevc"]), streams
        # the footage runs on: one segment's end is the next one's start, near enough (the
        # first segment of a run is left out: the camera's start-up burst)
        starts, ends = [r[3] for r in found], [r[4] for r in found]
        steps = [round(s - e, 2) for s, e in zip(starts[2:], ends[1:-1], strict=True)]
        assert max(map(abs, steps)) < 1.2, steps  # (the wall-clock anchor's tolerance)


def _slow_server(payload: bytes, delay_s: float) -> tuple[int, threading.Event]:
    """A TCP source that accepts, says nothing for `delay_s`, then streams `payload` at
    about real time (10 s of video): a camera that takes long to send its first packet."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.5)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                if done.wait(delay_s):
                    return
                step = len(payload) // 100
                with contextlib.suppress(OSError):
                    for i in range(0, len(payload), step):
                        conn.sendall(payload[i:i + step])
                        if done.wait(0.1):
                            return
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1], done


@pytest.mark.timeout(90)
def test_stall_clock_starts_with_the_first_packet(tmp_path: Path, scene: Path) -> None:
    """A camera whose first packet comes 7 s after the connection (a 1080p camera's RTSP
    setup and analysis): with 1 s segments it is not killed before its first segment."""
    ts = tmp_path / "scene.ts"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(scene), "-c", "copy", "-f", "mpegts",
                    str(ts)], check=True)
    port, done = _slow_server(ts.read_bytes(), delay_s=7.0)
    try:
        with recording(tmp_path / "rec", {"slow": StreamInput(f"tcp://127.0.0.1:{port}",
                                                              {"f": "mpegts"})},
                       segment_s=1) as rec:
            cam = rec.cameras["slow"]
            wait_for(lambda: cam.segments >= 2, timeout=40, what="two segments")
            assert cam.process.restarts == 0, cam.process.reason
            # once frames flow, a stall is judged on the segment length and frame rate
            assert 5.0 <= cam.process.stall_after_s < 10.0
    finally:
        done.set()


def test_a_segment_without_frames_is_never_indexed(tmp_path: Path) -> None:
    """ffmpeg killed before the first frame still lists the segment it opened."""
    store = Store(tmp_path / "rec", Limits(quota=2**30))
    store.open()
    cam = CameraRecorder("gate", StreamInput("rtsp://127.0.0.1:9/x"), store, 2.0,
                         on_segment=lambda *_: None, on_state=lambda *_: None,
                         on_error=lambda name, exc: pytest.fail(str(exc)))
    incoming = store.incoming("gate")
    incoming.mkdir(parents=True)
    empty = incoming / "run-000000.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=320x240:r=15",
                    "-frames:v", "0", "-c:v", "libx264", "-f", "mp4", "-movflags",
                    "+frag_keyframe+empty_moov+default_base_moof", str(empty)], check=True)
    cam._line(incoming, "run-000000.mp4,0.000000,0.000000")
    assert rows(tmp_path / "rec") == [] and not empty.exists()
    assert cam.health()["empty_segments"] == 1 and cam.segments == 0
    store.close()


def test_camera_back_after_a_failed_attempt_or_probe_restarts_at_once() -> None:
    """The backoff wait ends at once (ManagedProcess: ready() seen False, then True) when
    the camera was down before a failed attempt, and when its probe works again."""
    answers = iter([False, True, True, True])
    cam = CameraRecorder("gate", StreamInput("rtsp://127.0.0.1:9/x"), None, 2.0,  # type: ignore[arg-type]
                         on_segment=lambda *_: None, on_state=lambda *_: None,
                         on_error=lambda *_: None, ready=lambda: next(answers))
    assert cam._ready_check() is False  # a wait: the camera is down
    cam.process.state = "offline"
    cam._state("offline", "exited with code 1: 503 Service Unavailable")  # it came back, failed
    assert [cam._ready_check(), cam._ready_check()] == [False, True], \
        "the next wait must end at the first poll that finds the camera up"
    cam._state("offline", "exited with code 1: 503 Service Unavailable")
    assert cam._ready_check() is True  # one fast retry per outage, not a busy loop
    cam.retry_now()  # its probe worked: the wait ends now
    assert [cam._ready_check(), cam._ready_check()] == [False, True]


def test_timestamp_warnings_reach_log_and_health(caplog: pytest.LogCaptureFixture) -> None:
    cam = CameraRecorder("gate", StreamInput("rtsp://u:secret@127.0.0.1:9/x"), None, 2.0,  # type: ignore[arg-type]
                         on_segment=lambda *_: None, on_state=lambda *_: None,
                         on_error=lambda *_: None)
    line = ("[segment @ 0x1] Non-monotonous DTS in output stream 0:0; previous: 90130, "
            "current: 87032; changing to 90131 (rtsp://u:secret@127.0.0.1:9/x)")
    with caplog.at_level("WARNING", logger="recorder.camera"):
        for _ in range(50):
            assert "secret" not in cam._stderr_line(line)
        cam._stderr_line("[rtsp @ 0x2] method PLAY failed")  # not about timestamps
    said = [r for r in caplog.records if "Non-monotonous DTS" in r.getMessage()]
    assert len(said) == 1, "rate-limited: one line a minute"
    assert "secret" not in said[0].getMessage()
    health = cam.health()
    assert health["timestamp_warnings"] == 50 and "Non-monotonous" in health["last_warning"]
