"""What a stream carries, asked of ffprobe: codec, resolution, frame rate.

Used before recording starts (and on each reconnect) so that a camera sending MJPEG, or
a wrong password, shows up in health as a plain reason rather than as a recorder that
restarts forever. Every message is passed through `mask_credentials`.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

from drivers.cameras.base import RECORDABLE_CODECS, StreamInput, mask_credentials
from drivers.cameras.errors import explain
from drivers.process import spawn, terminate

# How long ffprobe reads the stream to learn its parameters (its default is 5 s): two
# keyframe intervals of a camera set up as docs/cameras.md asks.
ANALYZE_S = 2.0


class ProbeError(Exception):
    """The stream could not be probed; `str()` is a masked, human reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = mask_credentials(detail)


@dataclass(frozen=True)
class StreamInfo:
    """The first video stream of an input, and its first audio track (if any)."""

    codec: str
    width: int
    height: int
    fps: float | None
    profile: str = ""
    pix_fmt: str = ""
    audio: str = ""  # codec of the first audio track ('' = the stream has none)
    audio_rate: int | None = None

    @property
    def recordable(self) -> bool:
        """Whether the recorder can stream-copy it (H.264 or H.265)."""
        return self.codec in RECORDABLE_CODECS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def audio_recordable(self) -> bool:
        """Whether the recorder can keep the audio track (it encodes it to AAC)."""
        return bool(self.audio)

    def audio_words(self, record: bool | None = None) -> str:
        """The audio track in plain words, and whether it is recorded (`record`: the
        camera's ``audio`` setting; None when not known)."""
        if not self.audio:
            return "no audio track"
        rate = f" {self.audio_rate / 1000:g} kHz" if self.audio_rate else ""
        if record is None:
            return f"audio {self.audio}{rate} (recorded as AAC when the camera's audio = true)"
        if record:
            return f"audio {self.audio}{rate}: recorded as AAC"
        return f"audio {self.audio}{rate}: not recorded (audio = false in the camera's config)"

    def __str__(self) -> str:
        fps = f" {self.fps:g} fps" if self.fps else ""
        return f"{self.codec} {self.width}x{self.height}{fps}"


STANDARD_RATES = (1.0, 2.0, 5.0, 6.0, 7.5, 8.0, 10.0, 12.0, 12.5, 15.0, 20.0, 24.0, 25.0,
                  29.97, 30.0, 50.0, 59.94, 60.0)


def _rate(text: str | None) -> float | None:
    try:
        value = float(Fraction(text or "0/0"))
    except (ValueError, ZeroDivisionError):
        return None
    if not 0 < value < 1000:
        return None
    # A rate guessed from a few timestamps of a live stream jitters (14.67 for 15 on a busy
    # machine); cameras run at a handful of standard rates, so report the nearest one
    # within 5 %.
    nominal = min(STANDARD_RATES, key=lambda rate: abs(rate - value))
    return nominal if abs(value - nominal) <= 0.05 * nominal else round(value, 2)


def probe(stream: StreamInput, timeout: float = 10.0) -> StreamInfo:
    """Probe `stream`; raises ProbeError with a clear reason (credentials masked)."""
    args = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams",
            "-analyzeduration", str(int(ANALYZE_S * 1e6)),
            "-fpsprobesize", "5",  # the default waits ~4 s on a 5 fps MJPEG camera
            *stream.ffmpeg_args()]
    started = time.monotonic()
    try:
        proc = spawn(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise ProbeError(f"cannot run ffprobe: {exc.strerror}") from None
    try:
        out, err = proc.communicate(timeout=timeout + ANALYZE_S + 3)
    except subprocess.TimeoutExpired:
        terminate(proc, 1.0)
        raise ProbeError(f"the camera did not describe its stream within "
                         f"{timeout + ANALYZE_S + 3:g} s") from None
    finally:
        terminate(proc, 1.0)
    errors = err.decode(errors="replace")
    if proc.returncode != 0:
        silent = time.monotonic() - started >= 0.8 * timeout and (
            "Invalid data" in errors or "timed out" in errors)
        if silent:  # ffmpeg's words for a socket that connects and then says nothing
            raise ProbeError(f"no answer from the camera within {timeout:g} s "
                             "(it accepts the connection, then says nothing)", errors)
        raise ProbeError(explain(errors) or f"ffprobe exited with {proc.returncode}", errors)
    try:
        streams = json.loads(out or b"{}").get("streams", [])
    except ValueError:
        raise ProbeError("ffprobe printed no JSON", errors) from None
    video = [s for s in streams if s.get("codec_type") == "video"]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not video:
        raise ProbeError("no video stream in the input", errors)
    s = video[0]
    sound = audio[0] if audio else {}
    return StreamInfo(codec=s.get("codec_name", "unknown"), width=int(s.get("width") or 0),
                      height=int(s.get("height") or 0),
                      # r_frame_rate: avg_frame_rate is skewed by the burst at connect
                      fps=_rate(s.get("r_frame_rate")) or _rate(s.get("avg_frame_rate")),
                      profile=s.get("profile", ""), pix_fmt=s.get("pix_fmt", ""),
                      audio=sound.get("codec_name", ""),
                      audio_rate=int(sound["sample_rate"]) if sound.get("sample_rate") else None)
