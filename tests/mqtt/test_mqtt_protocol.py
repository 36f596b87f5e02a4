"""MQTT 5 with fallback to 3.1.1, through a proxy that plays an MQTT-3.1.1-only broker."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Any

from mqtt_helpers import BridgeNode, node_config

from firmware.events import ObjectEvent
from tests.shared_broker import SharedBroker
from tests.waiting import wait_for


class OldBrokerProxy:
    """Forwards MQTT 3.1.1 connections to `port`; answers an MQTT 5 CONNECT the way a
    3.1.1-only broker does (CONNACK 'unacceptable protocol version') and hangs up."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.levels: list[int] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = b""
        while len(head) < 9:  # fixed header, length, protocol name "MQTT", level
            chunk = conn.recv(64)
            if not chunk:
                conn.close()
                return
            head += chunk
        length_bytes = 1
        while head[length_bytes] & 0x80:
            length_bytes += 1
        level = head[1 + length_bytes + 6]
        self.levels.append(level)
        if level == 5:
            conn.sendall(bytes([0x20, 0x02, 0x00, 0x01]))
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target))
        upstream.sendall(head)
        for a, b in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_falls_back_to_311_and_keeps_contract(broker: SharedBroker, recorder_factory: Any,
                                              tmp_path: Path) -> None:
    root = broker.root("rw05")
    proxy = OldBrokerProxy(broker.port)
    rec = recorder_factory(broker.port, f"{root}/#")
    try:
        cfg = node_config(tmp_path, [f"mqtt://127.0.0.1:{proxy.port}"], reconnect_min_s=0.2,
                          prefix=broker.prefix)
        with BridgeNode(cfg) as node:
            rec.wait_for(lambda m: any(p == b"online" for _, p, *_ in m), 15)
            assert node.bridge.link.protocol == "3.1.1"
            assert proxy.levels[:1] == [5] and proxy.levels[-1] == 4
            node.bus.publish(ObjectEvent(track_id="1", phase="start", label="person",
                                         score=0.7))
            rec.wait_for(lambda m: any(t.endswith("/events") for t, *_ in m), 10)
            wait_for(lambda: node.bridge.outbox.depth() == 0, 10,
                     "PUBACKs of 3.1.1 to empty the outbox")
    finally:
        proxy.close()
    assert rec.payloads("/status")[-1] == b"offline"


def test_configured_311(broker: SharedBroker, recorder_factory: Any, tmp_path: Path) -> None:
    root = broker.root("rw05")
    rec = recorder_factory(broker.port, f"{root}/status")
    with BridgeNode(node_config(tmp_path, broker, protocol="3.1.1")) as node:
        rec.wait_for(lambda m: any(p == b"online" for _, p, *_ in m), 15)
        assert node.bridge.link.protocol == "3.1.1"
