"""One camera's recording: an ffmpeg that stream-copies the main stream into fragmented
MP4 segments in the camera's ``.incoming`` directory, and a reader of its stdout.

ffmpeg writes two things to stdout: the segment list (``-segment_list pipe:1``, CSV, one
line per *closed* segment, written after the segment's trailer) and progress blocks
(``-progress pipe:1``, ``frame=...`` lines). A list line is the "segment closed" signal:
the file's frames are counted (`recorder.mp4`), and a segment with at least one is
committed to the store and beats the ManagedProcess.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from drivers.cameras.base import StreamInput, mask_credentials
from drivers.cameras.progress import ProgressParser
from drivers.managed import ManagedProcess
from recorder import mp4
from recorder.index import Segment
from recorder.store import SUFFIX, Store

log = logging.getLogger(__name__)

#: Fragmented MP4: every fragment starts at a keyframe and carries its own index, so a
#: file cut short by kill -9 or power loss still plays up to the cut. The video track keeps
#: the RTP clock's 90 kHz, so the timestamp guard below can count in it.
FRAGMENTED_MP4 = "movflags=+frag_keyframe+empty_moov+default_base_moof"
TIMESCALE = 90_000
#: Audio as browsers and phones play it in MP4: AAC-LC; G.711 at 8 kHz needs little.
AUDIO_ARGS = ["-c:a", "aac", "-b:a", "32k"]
#: The audio timestamps get the same guard as the video's, in AAC frames (DURATION): each
#: track goes on from where it was, so a step of either clock keeps them in step.
AUDIO_GUARD = ["-bsf:a",
               "setts=ts=if(eq(N\\,0)+eq(DTS\\,NOPTS)+eq(PREV_INDTS\\,NOPTS)"
               "+eq(PREV_OUTDTS\\,NOPTS)+lte(DURATION\\,0)\\,TS\\,TS-DTS+if("
               "lt(DTS-PREV_INDTS\\,DURATION/5)+gt(DTS-PREV_INDTS\\,50*DURATION)"
               "\\,PREV_OUTDTS+DURATION\\,DTS+PREV_OUTDTS-PREV_INDTS))"]


def timestamp_guard(fps: float | None) -> str:
    """A `setts` bitstream filter that keeps video timestamps moving forward at the
    camera's pace: a step of the input's timestamps by more than a second, backwards, or
    by less than a fifth of a frame interval (the camera's RTP/RTCP clock jumped, as when
    another client joins a camera that sends audio too) becomes one frame interval,
    instead of footage squeezed into microseconds (ffmpeg's muxer answers a backward step
    with frames 1 tick apart) or a stretched gap."""
    frame = round(TIMESCALE / (fps or 15.0))
    step = "DTS-PREV_INDTS"
    guarded = (f"if(lt({step}\\,{frame // 5})+gt({step}\\,{TIMESCALE})"
               f"\\,PREV_OUTDTS+{frame}\\,DTS+PREV_OUTDTS-PREV_INDTS)")
    unset = "eq(N\\,0)+eq(DTS\\,NOPTS)+eq(PREV_INDTS\\,NOPTS)+eq(PREV_OUTDTS\\,NOPTS)"
    return f"setts=ts=if({unset}\\,TS\\,TS-DTS+{guarded})"


def record_args(source: StreamInput, pattern: Path, segment_s: float, *,
                audio: bool = False, fps: float | None = None) -> list[str]:
    """The ffmpeg command line recording `source` into segments named `pattern`.

    An RTSP camera is asked only for the tracks that are recorded
    (``-allowed_media_types``): with one track ffmpeg takes its timestamps from the RTP
    clock alone, and the camera's RTCP reports (which jump when another client joins)
    cannot move them. `audio` records the camera's first audio track too, as AAC."""
    url = source.url.lower()
    rtsp = url.startswith(("rtsp://", "rtsps://"))
    # The guards are for a camera's clock. Producer cameras (our own encoder, over the
    # relay) have none to step, and ffmpeg 5.1 ends a bitstream filter where a looped file
    # (the tests' live input) starts over.
    guard = rtsp or url.startswith(("http://", "https://"))
    tracks = ["-allowed_media_types", "video+audio" if audio else "video"] if rtsp else []
    outputs = ["-map", "0:v:0", "-c:v", "copy"]
    outputs += ["-bsf:v", timestamp_guard(fps)] if guard else []
    if audio:
        outputs += ["-map", "0:a:0?", *AUDIO_ARGS, *(AUDIO_GUARD if guard else [])]
    else:
        outputs += ["-an"]
    return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", "-nostats",
            "-progress", "pipe:1", "-stats_period", "2", *tracks, *source.ffmpeg_args(),
            *outputs, "-f", "segment", "-segment_time", f"{segment_s:g}",
            "-segment_format", "mp4",
            "-segment_format_options", f"{FRAGMENTED_MP4}:video_track_timescale={TIMESCALE}",
            "-reset_timestamps", "1", "-segment_list", "pipe:1", "-segment_list_type", "csv",
            str(pattern)]


class CameraRecorder:
    """Records one camera for as long as it is started; restarted with backoff by
    ManagedProcess when ffmpeg exits or stalls, capped at `backoff_cap_s`.

    Stall detection starts with the first packet: until then the camera is connecting
    (ffmpeg's own socket `timeout` gives up on a silent one) and `connect_s` applies; until
    the first segment closes, frames arriving are progress (the keyframe interval is not
    known yet); after it, no closed segment for twice the segment's expected length (the
    configured one, or longer when the camera's keyframes are further apart), plus a few
    frame intervals at the camera's measured rate, restarts ffmpeg.

    `ready()` (the camera's cheap reachability check) cuts the backoff short when a camera
    that was down answers again; so does `retry_now()` (the camera's probe found it back),
    and a camera that was down before a failed attempt still counts as down in the next
    wait: its return restarts the recording at once, whatever the backoff."""

    #: Timestamp warnings of ffmpeg logged at most once per this many seconds per camera.
    WARN_EVERY_S = 60.0

    def __init__(
        self,
        name: str,
        source: StreamInput,
        store: Store,
        segment_s: float,
        *,
        on_segment: Callable[[str, Segment], None],
        on_state: Callable[[str, str, str], None],
        on_frames: Callable[[str, int], None] | None = None,
        on_error: Callable[[str, BaseException], None],
        backoff_cap_s: float = 30.0,
        ready: Callable[[], bool | None] | None = None,
        audio: bool = False,
        fps: float | None = None,
        connect_s: float = 30.0,
    ) -> None:
        self.name = name
        self.source = source
        self.store = store
        self.segment_s = segment_s
        self.audio = audio
        self.fps = fps  # configured or probed; measured once frames flow
        self.connect_s = connect_s
        self._on_segment = on_segment
        self._on_state = on_state
        self._on_frames = on_frames
        self._on_error = on_error
        self._ready = ready
        self.run_id = ""
        self.last_segment_at: float | None = None  # monotonic
        self.last_segment: Segment | None = None
        self.sizes: list[int] = []
        self.durations: list[float] = []
        self.segments = 0
        self.empty_segments = 0  # closed with no video frame: not indexed
        self.timestamp_warnings = 0
        self.squeezed_frames = 0
        self.last_warning = ""
        self.audio_track = ""  # codec of the recorded audio track ('' = none recorded)
        self._warned_at = 0.0
        self._unsaid = 0
        self._offset: float | None = None
        self._progress = ProgressParser()
        self._first_frame_at: float | None = None
        self._frames_since_start = 0
        self._run_segments = 0  # segments closed by the current ffmpeg
        self._seen_down = False  # the camera was unreachable since it last recorded
        self._replay: list[bool] = []  # answers `_ready_check` gives before asking `ready`
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None
        self.process = ManagedProcess(
            f"rec:{name}", self._make_args, on_state=self._state, on_start=self._started,
            stall_after_s=connect_s, backoff_cap_s=backoff_cap_s,
            stdout=subprocess.PIPE, redact=self._stderr_line, ready=self._ready_check)

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        """Stop ffmpeg and wait for its last segment to be committed."""
        self.process.stop()
        reader = self._reader
        if reader is not None:
            reader.join(5.0)

    def retry_now(self) -> None:
        """The camera was seen reachable again (its probe worked): if ffmpeg is waiting
        out a backoff, restart it now rather than at the end of the wait."""
        if self.process.state == "offline":
            with self._lock:
                self._replay = [False, True]

    def headroom(self) -> int:
        """Bytes to keep free for this camera's open segment."""
        if not self.sizes:
            return 0
        return int(max(self.sizes) * 1.25)

    def stall_after_s(self) -> float:
        """How long without a closed segment counts as a stall, once frames flow: twice
        the segment's expected length (the camera's keyframe interval may make segments
        longer than configured), plus four frame intervals, at least 5 s."""
        expected = max([self.segment_s, *self.durations[-3:]])
        fps = self.measured_fps() or self.fps or 1.0
        return max(2 * expected + 4 / fps, 5.0)

    def measured_fps(self) -> float | None:
        """Frames per second since the first frame of the current run."""
        first = self._first_frame_at
        if first is None:
            return None
        span = time.monotonic() - first
        if span < 2.0 or self._frames_since_start < 2:
            return None
        return self._frames_since_start / span

    def health(self) -> dict:
        """This camera's recording figures (for the recorder's health)."""
        now = time.monotonic()
        return {
            "state": self.process.state,
            "reason": self.process.reason,
            "restarts": self.process.restarts,
            "segments": self.segments,
            "empty_segments": self.empty_segments,
            "last_segment_age_s": (round(now - self.last_segment_at, 1)
                                   if self.last_segment_at is not None else None),
            "audio": self.audio_status(),
            "timestamp_warnings": self.timestamp_warnings,
            "squeezed_frames": self.squeezed_frames,
            "last_warning": self.last_warning or None,
        }

    def audio_status(self) -> str:
        """Whether sound is recorded, and if not, why: for health and `cameras probe`."""
        if not self.audio:
            return "not recorded: audio = off in the camera's config"
        if self.audio_track:
            return "recorded (AAC)" if self.audio_track == "mp4a" else \
                f"recorded ({self.audio_track})"
        if self.segments:
            return "not recorded: the camera sends no audio track"
        return "recorded if the camera sends it (no segment yet)"

    # -- ManagedProcess hooks (its thread) ------------------------------------------------
    def _make_args(self) -> list[str]:
        # The previous ffmpeg (if any) is dead: settle what it left before starting anew.
        previous = self._reader
        if previous is not None:  # let it commit what the dead ffmpeg closed
            previous.join(5.0)
        incoming = self.store.incoming(self.name)
        try:
            # Never parents=True: a vanished disk must not be re-created on the SD card.
            self.store.check()
            incoming.parent.mkdir(exist_ok=True)
            incoming.mkdir(exist_ok=True)
            self._report_sweep(self.store.sweep_incoming(self.name))
        except Exception as exc:
            self._on_error(self.name, exc)
            raise OSError(f"store not writable: {exc}") from exc
        self.fps = self.measured_fps() or self.fps  # the last run's measured rate
        self.run_id = f"{int(time.time() * 1000):x}"
        self._offset = None
        self._progress = ProgressParser()
        self._first_frame_at = None
        self._frames_since_start = 0
        self._run_segments = 0
        self.process.stall_after_s = self.connect_s  # until the first packet
        return record_args(self.source, incoming / f"{self.run_id}-%06d{SUFFIX}",
                           self.segment_s, audio=self.audio, fps=self.fps)

    def _report_sweep(self, counts: dict[str, int]) -> None:
        if counts["recovered"] or counts["removed"]:
            log.info("%s: after ffmpeg restart, recovered %d and removed %d partial "
                     "segment(s)", self.name, counts["recovered"], counts["removed"])

    def _state(self, state: str, reason: str) -> None:
        if state == "online":
            with self._lock:
                self._seen_down = False
                self._replay = []
        elif state == "offline":
            with self._lock:
                # A camera that was down before this failed attempt is still "down" for
                # the wait that follows: its return must end the wait at once.
                self._replay = [False] if self._seen_down else []
                self._seen_down = False  # one fast retry per outage, not a busy loop
        self._on_state(self.name, state, reason)

    def _ready_check(self) -> bool | None:
        with self._lock:
            if self._replay:
                return self._replay.pop(0)
        answer = self._ready() if self._ready is not None else None
        if answer is False:
            with self._lock:
                self._seen_down = True
        return answer

    def _stderr_line(self, line: str) -> str:
        """Every stderr line of ffmpeg passes here (ManagedProcess's `redact`): masked,
        and a warning about timestamps counted, kept for health and logged (at most once
        a minute per camera, with how many were left unsaid)."""
        line = mask_credentials(line)
        low = line.lower()
        if "dts" in low or "pts" in low or "timestamp" in low:
            self.timestamp_warnings += 1
            self.last_warning = line.strip()[-300:]
            now = time.monotonic()
            if now - self._warned_at >= self.WARN_EVERY_S:
                more = f" (and {self._unsaid} more since the last one logged)" \
                    if self._unsaid else ""
                log.warning("%s: ffmpeg: %s%s", self.name, self.last_warning, more)
                self._warned_at, self._unsaid = now, 0
            else:
                self._unsaid += 1
        return line

    def _started(self, proc: subprocess.Popen) -> None:
        self._reader = threading.Thread(target=self._read, args=(proc,),
                                        name=f"rec-out:{self.name}", daemon=True)
        self._reader.start()

    # -- stdout reader ----------------------------------------------------------------
    def _read(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        incoming = self.store.incoming(self.name)
        try:
            for raw in iter(proc.stdout.readline, b""):
                self._line(incoming, raw.decode(errors="replace").strip())
        except (ValueError, OSError):
            pass  # ManagedProcess closed the pipe: ffmpeg is gone; leftovers are swept

    def _line(self, incoming: Path, line: str) -> None:
        """One stdout line: a progress field or a closed segment (name,start,end)."""
        if "=" in line:
            block = self._progress.feed(line)
            if block is not None:
                self._frames(block["new_frames"])
        elif line.count(",") == 2 and line.endswith(tuple("0123456789")):
            name, start_s, end_s = line.split(",")
            try:
                start, end = float(start_s), float(end_s)
            except ValueError:
                log.warning("%s: odd segment list line %r", self.name, line)
                return
            self._closed(incoming / name, start, end)

    def _frames(self, delta: int) -> None:
        if delta <= 0:
            return
        if self._first_frame_at is None:  # the camera is connected: the stall clock starts
            self._first_frame_at = time.monotonic()
            self.process.beat()
        else:
            self._frames_since_start += delta
            if not self._run_segments:
                # frames flow but the first segment is not closed: the camera's keyframes
                # may be further apart than a segment, which only its first segment tells
                self.process.beat()
        self.process.stall_after_s = self.stall_after_s()
        if self._on_frames is not None:
            self._on_frames(self.name, delta)

    def _closed(self, path: Path, start_s: float, end_s: float) -> None:
        """A segment closed: check its frames, stream times -> wall clock, commit, beat."""
        now = time.time()
        if not path.exists():  # already swept up after a restart: nothing to do
            log.warning("%s: closed segment %s is gone", self.name, path.name)
            return
        try:
            info = mp4.read(path)
        except mp4.Mp4Error as exc:  # ffmpeg closed it: keep it, timed by the list line
            info = None
            log.warning("%s: cannot read the boxes of segment %s (%s): indexed as listed",
                        self.name, path.name, exc)
        video = info.video if info is not None else None
        if info is not None and (video is None or video.frames == 0):
            # ffmpeg names a segment it opened even when no frame reached it (killed
            # before the camera sent one): an empty file is not footage
            self.empty_segments += 1
            log.warning("%s: segment %s holds no video frame: not indexed", self.name,
                        path.name)
            path.unlink(missing_ok=True)
            return
        if video is not None and video.squeezed:
            self.squeezed_frames += video.squeezed
            self.last_warning = (f"{video.squeezed} frame(s) of {path.name} squeezed "
                                 "(timestamps jumped)")
            log.warning("%s: %s", self.name, self.last_warning)
        if info is not None and info.audio is not None:
            self.audio_track = info.audio.codec or "audio"
        seconds = video.seconds if video is not None and video.seconds > 0 \
            else end_s - start_s
        offset = now - end_s  # the list line is written as the segment closes
        if self._offset is None or abs(offset - self._offset) > 1.0:
            self._offset = offset
        end = self._offset + end_s
        start = end - seconds  # as long as its frames last, whatever the list line says
        try:
            segment = self.store.commit(self.name, path, start, end)
        except Exception as exc:
            self._on_error(self.name, exc)
            return
        self.last_segment = segment
        self.last_segment_at = time.monotonic()
        self.segments += 1
        self._run_segments += 1
        self.sizes = [*self.sizes[-4:], segment.bytes]
        self.durations = [*self.durations[-4:], seconds]
        self.process.stall_after_s = self.stall_after_s()
        self.process.beat()
        self._on_segment(self.name, segment)
