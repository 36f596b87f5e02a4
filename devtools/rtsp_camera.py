"""An RTSP test camera: GStreamer's RTSP server on 127.0.0.1 serving a real H.264 stream.

What it serves is the synthetic street scene of `devtools.scene` (a person
walking across a background, a keyframe every second), looped forever and paced in
real time, over RTSP/TCP at ``rtsp://127.0.0.1:<port>/<path>``, optionally behind RTSP
basic authentication so that wrong-password tests are real. ``codec="mjpeg"`` serves a
live MJPEG test pattern instead (a stream the recorder cannot stream-copy).

Profiles of the cheap cameras a watch post really has: ``codec="h265"`` (main profile,
4:2:0, what most 4 MP cameras send), ``audio="pcma"`` or ``"pcmu"`` (a G.711 track next to
the video, 8 kHz mono, as their microphones deliver), and `join()`: a second RTSP client
that joins the running (shared) media for a while, as the node's own probe, a phone app
or the camera vendor's NVR do.

The scene is rendered once (ffmpeg, libx264) and cached in the temp directory; the
server pushes its access units through an ``appsrc``, so serving costs no encoding.
The server half runs under Debian's ``/usr/bin/python3`` (python3-gi is not in the
venv): this file is both the launcher (imported) and the server (run as a script), so
its top-level imports are standard library only.

Example::

    with RtspTestCamera(user="admin", password="s3cret") as cam:
        print(cam.url)   # rtsp://admin:s3cret@127.0.0.1:41234/cam
        cam.restart()    # an outage of a fraction of a second
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"
AUD = b"\x00\x00\x00\x01\x09"
AUD_H265 = b"\x00\x00\x00\x01\x46\x01"
CODECS = ("h264", "h265", "mjpeg")
AUDIO = {"pcma": ("alawenc", "rtppcmapay", 8), "pcmu": ("mulawenc", "rtppcmupay", 0)}


# ---- the launcher (venv side) ------------------------------------------------------------
def scene_h264(*, seconds: float = 12.0, size: tuple[int, int] = (640, 360), fps: int = 15,
               cache_dir: Path | None = None, codec: str = "h264") -> Path:
    """The street scene as a raw H.264 (or H.265: `codec="h265"`, main profile, 4:2:0)
    Annex B file with access unit delimiters, a keyframe every second, cached."""
    cache = cache_dir or Path(tempfile.gettempdir()) / "ronda-test-camera"
    cache.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(f"v2 {seconds} {size} {fps}".encode()).hexdigest()[:12]
    out = cache / f"scene-{key}.{codec}"
    if out.is_file() and out.stat().st_size > 0:
        return out
    from devtools.scene import render_scene

    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        mkv = render_scene(Path(tmp) / "scene.mkv", seconds=seconds, size=size, fps=fps,
                           walk=(0.5, max(1.0, seconds - 0.5)))
        part = Path(tmp) / f"scene.{codec}"
        if codec == "h265":
            encode = ["-c:v", "libx265", "-preset", "ultrafast", "-profile:v", "main",
                      "-pix_fmt", "yuv420p", "-x265-params",
                      f"keyint={fps}:min-keyint={fps}:scenecut=0:bframes=0:log-level=error",
                      "-bsf:v", "hevc_metadata=aud=insert", "-f", "hevc"]
        else:
            encode = ["-c", "copy", "-bsf:v", "h264_mp4toannexb,h264_metadata=aud=insert",
                      "-f", "h264"]
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(mkv),
                        *encode, str(part)], check=True)
        os.replace(part, out)  # atomic: parallel tests may render the same scene
    return out


def port_free(port: int) -> None:
    """Raise OSError when something already listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise OSError(exc.errno, f"port {port} is in use (another camera or server "
                                     f"listens there): pick another with --port") from None


def rtsp_answers(port: int, timeout: float = 0.5) -> bool:
    """Whether an RTSP server on 127.0.0.1:`port` answers OPTIONS."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"OPTIONS rtsp://127.0.0.1:{port}/ RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
            return sock.recv(64).startswith(b"RTSP/1.0")
    except OSError:
        return False


class RtspTestCamera:
    """Runs the RTSP test camera as a child process; `url` is where it serves."""

    def __init__(self, port: int | None = None, path: str = "cam", *, user: str | None = None,
                 password: str | None = None, codec: str = "h264", seconds: float = 12.0,
                 size: tuple[int, int] = (640, 360), fps: int = 15,
                 audio: str | None = None, jump_after: float = 0.0,
                 jump_s: float = 2.0) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {codec!r}")
        if audio is not None and audio not in AUDIO:
            raise ValueError(f"audio must be one of {', '.join(AUDIO)} or None, not {audio!r}")
        self.audio = audio
        self.jump_after, self.jump_s = jump_after, jump_s
        if port is None:
            from devtools.broker import free_port  # venv side only

            port = free_port()
        self.port = port
        self.path = path.strip("/")
        self.user, self.password = user, password
        self.codec, self.seconds, self.size, self.fps = codec, seconds, size, fps
        self.proc: subprocess.Popen | None = None
        self._logdir = tempfile.TemporaryDirectory(prefix="ronda-rtsp-")
        self.log_path = Path(self._logdir.name) / "server.log"

    @property
    def url(self) -> str:
        """The stream URL, with the credentials when the camera has some."""
        return self.url_as(self.user, self.password)

    @property
    def plain_url(self) -> str:
        """The stream URL without credentials."""
        return f"rtsp://127.0.0.1:{self.port}/{self.path}"

    def url_as(self, user: str | None, password: str | None) -> str:
        """The URL with other credentials (for wrong-password tests)."""
        auth = f"{user}:{password}@" if user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}/{self.path}"

    def start(self, timeout: float = 30.0) -> RtspTestCamera:
        """Start serving; returns once the server answers RTSP (raises if it cannot)."""
        from drivers.process import spawn

        if not Path(SYSTEM_PYTHON).exists():
            raise FileNotFoundError(f"{SYSTEM_PYTHON} (with python3-gi) is needed")
        port_free(self.port)  # else an old server answering there would pass for this one
        args = [SYSTEM_PYTHON, str(Path(__file__).resolve()), "--serve",
                "--port", str(self.port), "--path", self.path, "--codec", self.codec,
                "--fps", str(self.fps)]
        if self.codec != "mjpeg":
            scene = scene_h264(seconds=self.seconds, size=self.size, fps=self.fps,
                               codec=self.codec)
            args += ["--file", str(scene)]
        if self.audio:
            args += ["--audio", self.audio]
        if self.jump_after:
            args += ["--jump-after", str(self.jump_after), "--jump-s", str(self.jump_s)]
        if self.user:
            args += ["--user", self.user, "--password", self.password or ""]
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.proc = spawn(args, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"RTSP test camera exited: {self.log_path.read_text()[-2000:]}")
            if rtsp_answers(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"RTSP test camera did not answer on port {self.port}")

    def stop(self, hard: bool = False) -> None:
        """Stop serving (SIGTERM; `hard` = SIGKILL, like a power cut)."""
        from drivers.process import terminate

        if self.proc is not None:
            if hard:
                self.proc.kill()
            terminate(self.proc, 3.0)
            self.proc = None

    def restart(self, outage_s: float = 0.0) -> None:
        """Stop, stay down `outage_s` seconds, start again on the same port."""
        self.stop()
        time.sleep(outage_s)
        self.start()

    def join(self, seconds: float = 3.0, *, wait: bool = True) -> subprocess.Popen:
        """A second client: ffmpeg plays the stream (every track) for `seconds` and
        discards it, as a probe, a phone app or another NVR joining the shared media do."""
        from drivers.process import spawn

        proc = spawn(["ffmpeg", "-nostdin", "-v", "quiet", "-rtsp_transport", "tcp",
                      "-i", self.url, "-t", f"{seconds:g}", "-f", "null", "-"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if wait:
            proc.wait(seconds + 30)
        return proc

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        self.stop()
        self._logdir.cleanup()

    def __enter__(self) -> RtspTestCamera:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- the server (/usr/bin/python3 side) ------------------------------------------------------
def _access_units(data: bytes, codec: str = "h264") -> list[tuple[bytes, bool]]:
    """Split an Annex B stream with AUDs into (access unit, is keyframe)."""
    aud = AUD_H265 if codec == "h265" else AUD

    def keyframe(nal_header: int) -> bool:
        if codec == "h265":
            return 16 <= (nal_header >> 1) & 0x3F <= 21  # IRAP pictures
        return (nal_header & 0x1F) == 5  # IDR

    units, start = [], data.find(aud)
    while start != -1:
        end = data.find(aud, start + len(aud))
        unit = data[start:] if end == -1 else data[start:end]
        key = any(keyframe(unit[i + 3]) for i in range(len(unit) - 4)
                  if unit[i:i + 3] == b"\x00\x00\x01")
        units.append((unit, key))
        start = end
    return units


def _serve(opts: argparse.Namespace) -> int:  # pragma: no cover - runs in the child
    import signal

    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    loop = GLib.MainLoop()
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(opts.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_shared(True)
    factory.set_protocols(GstRtsp.RTSPLowerTrans.TCP)
    if opts.codec == "mjpeg":
        factory.set_launch(
            "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=320,"
            f"height=240,framerate={opts.fps}/1 ! jpegenc ! rtpjpegpay name=pay0 pt=26 )")
    else:
        units = _access_units(Path(opts.file).read_bytes(), opts.codec)
        if not units or not units[0][1]:
            print("scene file must start with a keyframe and carry AUDs", file=sys.stderr)
            return 2
        video = "h265" if opts.codec == "h265" else "h264"
        audio = ""
        if opts.audio:  # a live G.711 track, 8 kHz mono, next to the video
            encoder, payloader, pt = AUDIO[opts.audio]
            # an appsrc, not audiotestsrc: a generator answers seek queries, which makes
            # the RTSP server seek the media on PLAY, and a live media cannot seek
            audio = (" appsrc name=audio is-live=true format=time do-timestamp=true "
                     "caps=audio/x-raw,format=S16LE,layout=interleaved,rate=8000,channels=1 "
                     f"! {encoder} ! tee allow-not-linked=true ! {payloader} name=pay1 pt={pt}")
        factory.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true "
            f"caps=video/x-{video},stream-format=byte-stream,alignment=au,"
            f"framerate={opts.fps}/1 ! {video}parse ! rtp{video}pay name=pay0 pt=96 "
            f"config-interval=1{audio} )")
        period = 1.0 / opts.fps

        def push(src: Gst.Element, stop: threading.Event) -> None:
            n, t0 = 0, time.monotonic()
            jump_at = n_jump = None
            if opts.jump_after:  # the camera's video clock steps back once, as cheap ones do
                jump_at = int(opts.jump_after * opts.fps)
                n_jump = int(opts.jump_s * Gst.SECOND)
            while not stop.is_set():
                unit, _key = units[n % len(units)]
                buf = Gst.Buffer.new_wrapped(unit)
                buf.duration = int(period * Gst.SECOND)
                clock = src.get_clock()
                if jump_at is not None and n >= jump_at and clock is not None:
                    # do-timestamp's running time, less the jump
                    running = clock.get_time() - src.get_base_time()
                    buf.pts = buf.dts = max(running - n_jump, 0)
                if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                    return
                n += 1
                stop.wait(max(0.0, t0 + n * period - time.monotonic()))

        def push_audio(src: Gst.Element, stop: threading.Event) -> None:
            # a quiet 440 Hz tone, 20 ms (160 samples) a buffer, as a G.711 camera sends
            import array
            import math

            chunk = array.array("h", (int(3000 * math.sin(2 * math.pi * 440 * i / 8000))
                                      for i in range(160))).tobytes()
            n, t0 = 0, time.monotonic()
            while not stop.is_set():
                buf = Gst.Buffer.new_wrapped(chunk)
                buf.duration = 20 * Gst.MSECOND
                if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                    return
                n += 1
                stop.wait(max(0.0, t0 + n * 0.02 - time.monotonic()))

        def configure(_factory: object, media: GstRtspServer.RTSPMedia) -> None:
            src = media.get_element().get_by_name("src")
            stop = threading.Event()
            media.connect("unprepared", lambda *_: stop.set())
            threading.Thread(target=push, args=(src, stop), daemon=True).start()
            audio_src = media.get_element().get_by_name("audio")
            if audio_src is not None:
                threading.Thread(target=push_audio, args=(audio_src, stop), daemon=True).start()

        factory.connect("media-configure", configure)
    if opts.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(opts.user, opts.password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_role_from_structure(Gst.Structure.from_string(
            "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(f"/{opts.path}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{opts.port}", file=sys.stderr)
        return 1
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print(f"serving rtsp://127.0.0.1:{opts.port}/{opts.path}", flush=True)
    loop.run()
    return 0


# ---- command line ------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="test-camera", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve a synthetic street scene (a person walking past, H.264, a\n"
                    "keyframe every second, looped forever) as an RTSP camera on\n"
                    "127.0.0.1, over TCP. Point a camera entry of ronda.toml at it.\n\n"
                    "examples:\n"
                    "  scripts/test-camera --port 8554\n"
                    "  scripts/test-camera --port 8554 --user admin --password s3cret\n"
                    "  scripts/test-camera --codec mjpeg   # a codec the recorder refuses\n"
                    "  scripts/test-camera --codec h265 --audio pcma   # a cheap 4 MP camera\n"
                    "  ffplay -rtsp_transport tcp rtsp://127.0.0.1:8554/cam")
    p.add_argument("--port", type=int, default=8554, help="TCP port (default 8554)")
    p.add_argument("--path", default="cam", help="stream path (default: cam)")
    p.add_argument("--user", help="require RTSP basic auth with this user name")
    p.add_argument("--password", default="", help="password for --user")
    p.add_argument("--codec", choices=list(CODECS), default="h264",
                   help="h264 (the scene, default), h265 (the scene, main profile 4:2:0) "
                        "or mjpeg (a test pattern)")
    p.add_argument("--audio", choices=list(AUDIO),
                   help="add a G.711 audio track: pcma (A-law) or pcmu (mu-law)")
    p.add_argument("--size", default="1280x720", help="scene size WxH (default 1280x720)")
    p.add_argument("--fps", type=int, default=15, help="frames per second (default 15)")
    p.add_argument("--seconds", type=float, default=20.0, help="scene loop length (default 20)")
    p.add_argument("--jump-after", type=float, default=0.0, metavar="S",
                   help="after S seconds, step the video clock back (--jump-s) once")
    p.add_argument("--jump-s", type=float, default=2.0, help="size of that step (default 2)")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--file", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.serve:
        return _serve(opts)
    width, height = (int(v) for v in opts.size.lower().split("x"))
    cam = RtspTestCamera(opts.port, opts.path, user=opts.user, password=opts.password,
                         codec=opts.codec, seconds=opts.seconds, size=(width, height),
                         fps=opts.fps, audio=opts.audio)
    try:
        cam.start()
    except (OSError, RuntimeError) as exc:
        print(f"test-camera: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}",
              file=sys.stderr)
        return 1
    print(f"serving {cam.url}  (Ctrl-C to stop)", flush=True)
    try:
        while cam.running:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        cam.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
