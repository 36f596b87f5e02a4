"""A city media server and upload target on loopback, from Debian's nginx.

`LocalNginx` runs Debian's nginx (``nginx-light`` + ``libnginx-mod-rtmp``) unprivileged
in a temp directory: RTMP in on `rtmp_port` (application ``live``, recorded to
``<dir>/rec/<stream>.flv`` so a test can ffprobe what arrived, and HLS out under
``<dir>/hls``) and HTTP on `http_port` with WebDAV ``PUT`` under ``/upload/`` (files
land in ``<dir>/upload``). This is the set-up docs/uplink.md gives a city, minus TLS.

Example::

    with LocalNginx() as srv:
        print(srv.rtmp_url("rw05-gate"))   # rtmp://127.0.0.1:41234/live/rw05-gate
        print(srv.put_url("clip.mp4"))     # http://127.0.0.1:41235/upload/clip.mp4
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from devtools.broker import free_port
from drivers.process import spawn, terminate

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")

CONF = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
rtmp {{
  server {{
    listen 127.0.0.1:{rtmp_port};
    chunk_size 4096;
    application live {{
      live on;
      record all;
      record_path {dir}/rec;
      record_unique off;
      hls on;
      hls_path {dir}/hls;
      hls_fragment 2s;
    }}
  }}
}}
http {{
  access_log {dir}/access.log;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{http_port};
    client_max_body_size 0;
    location /upload/ {{
      root {dir};
      dav_methods PUT;
      create_full_put_path on;
      dav_access user:rw group:r all:r;
    }}
    location /forbidden/ {{ return 403; }}
    location /hls/ {{ root {dir}; }}
  }}
}}
"""


def nginx_available() -> str:
    """Why LocalNginx cannot run here, or '' when it can."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        return "nginx not installed (apt-get install nginx-light libnginx-mod-rtmp)"
    if not RTMP_MODULE.exists():
        return "the nginx RTMP module is not installed (apt-get install libnginx-mod-rtmp)"
    return ""


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


class _ChildServer:
    """A server run as one child process in its own temporary folder; a context manager."""

    proc: subprocess.Popen | None = None
    _tmp: tempfile.TemporaryDirectory | None = None

    def start(self):  # pragma: no cover - each server says how it starts
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


class LocalNginx(_ChildServer):
    """Debian's nginx with RTMP in and WebDAV PUT, on free loopback ports."""

    def __init__(self, directory: Path | None = None) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="ronda-nginx-")
        self.dir = Path(directory or self._tmp.name)  # type: ignore[union-attr]
        self.rtmp_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen | None = None

    def rtmp_url(self, stream: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{stream}"

    def put_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/upload/{name}"

    def recording(self, stream: str) -> Path:
        """Where nginx records what arrives on `stream`."""
        return self.dir / "rec" / f"{stream}.flv"

    def start(self) -> LocalNginx:
        for sub in ("rec", "hls", "upload", "body"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.dir / "nginx.conf"
        conf.write_text(CONF.format(module=RTMP_MODULE, dir=self.dir, rtmp_port=self.rtmp_port,
                                    http_port=self.http_port))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = spawn([binary, "-p", str(self.dir), "-c", str(conf)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not (_listening(self.rtmp_port) and _listening(self.http_port)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = (self.dir / "error.log")
                err += log.read_text() if log.exists() else ""
                self.stop()
                raise RuntimeError(f"nginx did not start: {err.strip()[-500:]}")
            time.sleep(0.05)
        return self



# ---- RTSP in (record mode), for H.265 ------------------------------------------------------
SYSTEM_PYTHON = "/usr/bin/python3"

RTSP_RECORD_SERVER = """\
import sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer

Gst.init(None)
port, directory, mounts_arg = sys.argv[1], sys.argv[2], sys.argv[3:]
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(port)
mounts = server.get_mount_points()
for i, mount in enumerate(mounts_arg):
    codec, path = mount.split(":", 1)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_transport_mode(GstRtspServer.RTSPTransportMode.RECORD)
    factory.set_launch(f"( rtp{codec}depay name=depay0 ! {codec}parse ! mpegtsmux "
                       f"! filesink location={directory}/{i}.ts sync=false )")
    mounts.add_factory("/" + path, factory)
server.attach(None)
print("ready", flush=True)
GLib.MainLoop().run()
"""


class RtspRecordServer(_ChildServer):
    """GStreamer's RTSP server in record mode (Debian's python3-gi): clients ANNOUNCE and
    RECORD to ``rtsp://127.0.0.1:<port>/<path>`` for each of `mounts` (path -> codec,
    h264 or h265; the server matches whole paths); what arrives is written stream-copied
    as MPEG-TS to `recording(path)`."""

    def __init__(self, mounts: dict[str, str]) -> None:
        self.mounts = dict(mounts)
        self._tmp = tempfile.TemporaryDirectory(prefix="ronda-rtsp-record-")
        self.dir = Path(self._tmp.name)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{path}"

    def recording(self, path: str) -> Path:
        return self.dir / f"{list(self.mounts).index(path)}.ts"

    def start(self) -> RtspRecordServer:
        script = self.dir / "server.py"
        script.write_text(RTSP_RECORD_SERVER)
        self.proc = spawn([SYSTEM_PYTHON, str(script), str(self.port), str(self.dir),
                           *(f"{codec}:{path}" for path, codec in self.mounts.items())],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            self.stop()
            raise RuntimeError(f"RTSP record server did not start: {err.strip()[-500:]}")
        deadline = time.monotonic() + 10
        while not _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self
