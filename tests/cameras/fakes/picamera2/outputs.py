"""Test double of picamera2.outputs: Output, FileOutput, FfmpegOutput, PyavOutput."""

from __future__ import annotations

import subprocess


class Output:
    def __init__(self, pts=None) -> None:
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        raise NotImplementedError


class FileOutput(Output):
    def __init__(self, file=None, pts=None, split=None) -> None:
        super().__init__(pts)
        self.fileoutput = open(file, "wb") if isinstance(file, str) else file  # noqa: SIM115

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        if self.recording and self.fileoutput is not None:
            self.fileoutput.write(frame)
            self.fileoutput.flush()


class FfmpegOutput(Output):
    """As the real one: ffmpeg reads the encoded frames on stdin, options come from
    `output_filename.split()`; a dead ffmpeg is reported to `error_callback`."""

    def __init__(self, output_filename, audio=False, audio_device="default", audio_sync=-0.3,
                 audio_samplerate=48000, audio_codec="aac", audio_bitrate=128000,
                 pts=None) -> None:
        super().__init__(pts)
        self.output_filename = output_filename
        self.ffmpeg: subprocess.Popen | None = None
        self.error_callback = None

    def start(self) -> None:
        command = ["ffmpeg", "-loglevel", "warning", "-y", "-use_wallclock_as_timestamps", "1",
                   "-thread_queue_size", "64", "-i", "-", "-c:v", "copy",
                   *self.output_filename.split()]
        self.ffmpeg = subprocess.Popen(command, stdin=subprocess.PIPE)
        super().start()

    def stop(self) -> None:
        super().stop()
        if self.ffmpeg is not None:
            self.ffmpeg.stdin.close()
            try:
                self.ffmpeg.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.ffmpeg.terminate()
            self.ffmpeg = None

    def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
        if self.recording and self.ffmpeg:
            try:
                self.ffmpeg.stdin.write(frame)
                self.ffmpeg.stdin.flush()
            except Exception as exc:
                self.ffmpeg = None
                if self.error_callback:
                    self.error_callback(exc)


class PyavOutput(Output):
    def __init__(self, output_name, format=None, pts=None) -> None:
        super().__init__(pts)
        self.output_name, self.format = output_name, format

    def start(self) -> None:
        raise RuntimeError("PyavOutput needs PyAV (av), not installed in the test double")
