"""One paho client from a broker URL and TLS/auth options: for the console service and the
Command Center's tools (`ronda cmd`, `ronda watch`, `ronda fleet-sim`).

It lives in `central/`, not in `mqtt/`: a node has its own link (`mqtt/link.py`) and
never runs these tools, so its release leaves them out (docs/architecture.md)."""

from __future__ import annotations

import argparse
import socket
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from mqtt.link import PAHO_LOG, tls_context
from mqtt.settings import Broker


@dataclass
class ClientOptions:
    """How an operator tool reaches the broker."""

    broker: str = "mqtt://127.0.0.1:1883"
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    client_id: str = ""


def make_client(opts: ClientOptions, protocol: int = paho.MQTTv5) -> tuple[paho.Client, Broker]:
    """A configured, not yet connected client and the parsed broker URL."""
    broker = Broker.parse(opts.broker)
    client = paho.Client(CallbackAPIVersion.VERSION2,
                         client_id=opts.client_id or f"ronda-tool-{uuid.uuid4().hex[:8]}",
                         protocol=protocol)
    if opts.username is not None:
        client.username_pw_set(opts.username, opts.password)
    if broker.tls or opts.ca_file or opts.cert_file:
        client.tls_set_context(tls_context(opts.ca_file, opts.cert_file, opts.key_file))
    return client, broker


def connect(opts: ClientOptions, timeout: float = 10.0,
            protocol: int = paho.MQTTv5) -> paho.Client:
    """Connect, start the network thread, and wait for the CONNACK (raises on failure)."""
    client, broker = make_client(opts, protocol)
    done = threading.Event()
    result: dict[str, object] = {}

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        result["reason"] = reason
        done.set()

    client.on_connect = on_connect
    client.enable_logger(PAHO_LOG)
    client.connect(broker.host, broker.port, keepalive=30)
    sock = client.socket()
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()
    if not done.wait(timeout):
        client.loop_stop()
        raise ConnectionError(f"{opts.broker}: no answer within {timeout:.0f} s")
    reason = result["reason"]
    if getattr(reason, "is_failure", False):
        client.loop_stop()
        raise ConnectionError(f"{opts.broker}: refused: {reason}")
    return client


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    """--broker, --prefix and the TLS/auth options of the operator tools."""
    parser.add_argument("--broker", "-b", default="mqtt://127.0.0.1:1883",
                        help="broker URL, mqtt:// or mqtts:// (default: mqtt://127.0.0.1:1883)")
    parser.add_argument("--prefix", default="ronda/v1", help="topic prefix (default: ronda/v1)")
    parser.add_argument("--ca-file", type=Path, help="CA certificate (PEM) of the broker")
    parser.add_argument("--cert-file", type=Path, help="client certificate (PEM)")
    parser.add_argument("--key-file", type=Path, help="client certificate's private key (PEM)")
    parser.add_argument("--username", help="MQTT user name")
    parser.add_argument("--password-file", type=Path,
                        help="file whose first line is the MQTT password")


def client_options(args: argparse.Namespace, password: str | None) -> ClientOptions:
    """ClientOptions from the arguments added by `add_client_arguments`."""
    return ClientOptions(broker=args.broker, ca_file=args.ca_file, cert_file=args.cert_file,
                         key_file=args.key_file, username=args.username, password=password)
