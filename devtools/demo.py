"""`ronda demo`: a broker, a synthetic RTSP camera and a node, all on loopback.

The node is started as a real `ronda run` child with a generated config, exactly as
systemd would start it; the demo subscribes to everything the node publishes and prints
it. Ctrl-C (or `seconds`) stops the node first (SIGTERM, outputs off), then the camera
and the broker. Every child dies with the demo even if it is killed (PDEATHSIG).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import tomli_w
from rich.console import Console

from devtools.broker import LocalBroker
from devtools.media_server import LocalNginx, nginx_available
from devtools.rtsp_camera import RtspTestCamera
from drivers.process import spawn, terminate
from mqtt.signing import generate_keypair, sign_command

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / ".cache" / "models" / "pose_detection.tflite"
NODE_ID = "demo-rw01"
# The demo node runs on simulated (mock) GPIO pins; the alarm wiring presses them on
# SIGUSR1 (first panic button) and SIGUSR2 (ack key), as a volunteer would.
PANIC_SCRIPT = (
    (30.0, signal.SIGUSR1, "a volunteer presses the panic button (siren and light go on)"),
    (42.0, signal.SIGUSR2, "the volunteer presses the ack key (the alarm is cleared)"),
)
LIVE_AT_S = 55.0  # the Command Center asks for live video (when nginx-rtmp is installed)


def node_config(workdir: Path, broker_url: str, camera_url: str, media_url: str | None = None,
                command_keys: list[str] | None = None,
                web_port: int | None = None) -> dict[str, Any]:
    """The config the demo node runs with: everything on loopback and in `workdir`."""
    cfg: dict[str, Any] = {
        "node": {"id": NODE_ID, "name": "Demo post", "data_dir": str(workdir / "state")},
        "mqtt": {"brokers": [broker_url], "health_interval_s": 10},
        "cameras": [{"name": "gang", "kind": "rtsp", "url": camera_url, "fps": 15,
                     "width": 960, "height": 540}],
        "recorder": {"path": str(workdir / "recordings"), "segment_s": 4,
                     "quota": "300 MB", "min_free": "100 MB"},
        "gpio": {"pin_factory": "mock", "panic": [{"pin": 17}], "siren": {"pin": 23},
                 "light": {"pin": 24}, "status_led": {"pin": 25}, "ack": {"pin": 27}},
    }
    if web_port is not None:
        cfg["web"] = {"enabled": True, "host": "127.0.0.1", "port": web_port}
    if MODEL.is_file():
        cfg["detect"] = {"enabled": True, "model": str(MODEL), "fps": 5}
    if media_url:
        cfg["uplink"] = {"media_url": media_url}
    if command_keys:
        cfg["mqtt"]["command_keys"] = command_keys
    return cfg


def describe(topic: str, payload: bytes) -> str:
    """One readable line for a message the node published."""
    if payload[:3] == b"\xff\xd8\xff":
        return f"[magenta]JPEG {len(payload) / 1024:.0f} kB[/]"
    try:
        data = json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")[:120]
    if topic.endswith("/health") and isinstance(data, dict):
        keys = ("uptime_s", "cpu_percent", "temperature_c", "outbox", "storage", "cameras")
        data = {k: data[k] for k in keys if k in data}
    text = json.dumps(data, separators=(",", ":"))
    return text if len(text) < 220 else text[:217] + "..."


class Demo:
    """Runs until Ctrl-C or `seconds`."""

    def __init__(self, seconds: float = 0, workdir: str | None = None) -> None:
        self.seconds = seconds
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="ronda-demo-")
        self.workdir = Path(workdir or self._tmp.name)
        self.console = Console(highlight=False)
        self.stop = threading.Event()
        self.operator_key, self.operator_public = generate_keypair()

    def run(self) -> int:
        self.workdir.mkdir(parents=True, exist_ok=True)
        signal.signal(signal.SIGTERM, lambda *_: self.stop.set())
        say = self.console.print
        broker = camera = node = client = media = None
        try:
            broker = LocalBroker().start()
            say(f"[bold]broker[/]   mosquitto on {broker.url}")
            camera = self._start_camera()
            say(f"[bold]camera[/]   synthetic RTSP camera at {camera.url}")
            if not nginx_available():
                media = LocalNginx(self.workdir / "media").start()
                say(f"[bold]media[/]    nginx-rtmp at {media.rtmp_url('')} "
                    f"(recorded in {media.dir / 'rec'})")
            web_port = self._web_port()
            config_path = self._write_config(broker.url, camera.url, media, web_port)
            say(f"[bold]node[/]     ronda run --config {config_path}  (id {NODE_ID})")
            if web_port is not None:
                password = self._web_user()
                say(f"[bold]web[/]      https://127.0.0.1:{web_port}/  log in as [bold]demo[/] "
                    f"with password [bold]{password}[/] (operator; shown once)")
                say("          the node's certificate is self-signed: accept the warning")
            say(f"[bold]data[/]     {self.workdir}")
            say("watching everything the node publishes; Ctrl-C stops the demo\n")
            client = self._subscribe(broker.port)
            node = spawn([sys.executable, "-m", "firmware", "run", "--config", str(config_path)],
                         stdin=subprocess.DEVNULL)
            started = time.monotonic()
            script = list(PANIC_SCRIPT)
            live_steps = [LIVE_AT_S, LIVE_AT_S + 10] if media is not None else []
            while not self.stop.wait(0.2):
                if node.poll() is not None:
                    say(f"[red]node exited with code {node.returncode}[/]")
                    return 1
                elapsed = time.monotonic() - started
                if script and elapsed >= script[0][0]:
                    _, sig, what = script.pop(0)
                    say(f"[bold yellow]demo: {what}[/]")
                    node.send_signal(sig)
                if live_steps and elapsed >= live_steps[0]:
                    self._live_step(len(live_steps), client, media)
                    live_steps.pop(0)
                if self.seconds and elapsed > self.seconds:
                    break
        except KeyboardInterrupt:
            pass
        finally:
            say("\nstopping: node, camera, broker")
            if node is not None:
                terminate(node, timeout=8)
            if client is not None:
                client.loop_stop()
                client.disconnect()
            if camera is not None:
                camera.close()
            if media is not None:
                media.stop()
            if broker is not None:
                broker.close()
            if self._tmp is not None:
                self._tmp.cleanup()
        say("stopped")
        return 0

    @staticmethod
    def _start_camera() -> RtspTestCamera:
        return RtspTestCamera(path="gang", size=(960, 540), seconds=20.0).start()

    def _write_config(self, broker_url: str, camera_url: str,
                      media: LocalNginx | None, web_port: int | None) -> Path:
        path = self.workdir / "ronda.toml"
        media_url = f"rtmp://127.0.0.1:{media.rtmp_port}/live/{{node}}-{{camera}}" \
            if media is not None else None
        path.write_text(tomli_w.dumps(node_config(self.workdir, broker_url, camera_url,
                                                  media_url, [self.operator_public],
                                                  web_port)))
        return path

    def _live_step(self, left: int, client: Any, media: Any) -> None:
        """First: a signed `live` command for the camera; then: what reached nginx."""
        say = self.console.print
        if left == 2:
            say("[bold yellow]demo: the Command Center asks for live video of 'gang' "
                "(signed `live` command, 30 s)[/]")
            cmd = sign_command(self.operator_key, node=NODE_ID, action="live",
                               args={"camera": "gang", "ttl_s": 30})
            client.publish(f"ronda/v1/{NODE_ID}/cmd/live", json.dumps(cmd), qos=1)
            return
        rec = media.recording(f"{NODE_ID}-gang")
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0",
                                "-show_entries", "stream=codec_name,width,height", "-of",
                                "csv=p=0", str(rec)], capture_output=True, text=True)
        what = probe.stdout.strip() or probe.stderr.strip()[-120:] or "nothing yet"
        say(f"[bold yellow]demo: the media server received: {what} "
            f"({rec.stat().st_size // 1024 if rec.exists() else 0} kB so far)[/]")

    @staticmethod
    def _web_port() -> int | None:
        """A free port for the web page, or None without the `web` extra."""
        try:
            import starlette  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            return None
        from devtools.broker import free_port

        return free_port()

    def _web_user(self) -> str:
        """The demo's operator, with a password made now (there is no default one)."""
        from web.users import FILENAME, UserStore, generate_password

        password = generate_password()
        UserStore(self.workdir / "state" / FILENAME).add("demo", "operator", password,
                                                          replace=True)
        return password

    def _subscribe(self, port: int) -> mqtt.Client:
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ronda-demo-viewer")

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            topic = msg.topic.removeprefix(f"ronda/v1/{NODE_ID}/")
            retained = " [dim](retained)[/]" if msg.retain else ""
            self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] [cyan]{topic}[/]"
                               f"{retained} {describe(msg.topic, msg.payload)}")

        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe(f"ronda/v1/{NODE_ID}/#", qos=1)
        client.connect("127.0.0.1", port)
        client.loop_start()
        return client
