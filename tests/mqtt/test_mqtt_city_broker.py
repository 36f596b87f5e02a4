"""The shipped city broker (examples/mosquitto/) as shipped: real nodes, a persistent Command
Center away during a backlog of more than 1,000 events and a broker restart (nothing lost),
operators, Home Assistant, and what the ACL refuses.

Only the listener port and the file locations differ from the shipped files; the password
file is made with the README's recipe.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mqtt_helpers import BridgeNode, node_config
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from test_mqtt_tls import make_pki

from devtools.broker import free_port, mosquitto_binary
from drivers.process import spawn, terminate
from firmware.events import ObjectEvent
from mqtt.link import tls_context
from mqtt.signing import generate_keypair, sign_command
from tests.waiting import wait_for

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mosquitto"
USERS = ("command-center", "operator-01", "homeassistant", "rw05", "rw06")
PER_NODE = 550  # two nodes: 1,100 events queued for the Command Center, > 1,000


def shipped_config(port: int, etc: Path, data: Path) -> str:
    """mosquitto.conf as shipped, with only the port and the file locations changed."""
    text = (EXAMPLE / "mosquitto.conf").read_text()
    out = text.replace("listener 8883\n", f"listener {port} 127.0.0.1\n")
    out = out.replace("/etc/mosquitto/ronda/", f"{etc}/").replace("/var/lib/mosquitto/",
                                                                  f"{data}/")
    changed = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True)
               if a != b and not a.startswith("#")]
    assert len(changed) == 7, changed  # listener, 5 files, persistence location
    return out


def make_passwords(etc: Path) -> dict[str, str]:
    """Run the README's recipe (the lines from `umask` to `mosquitto_passwd -U`)."""
    readme = (EXAMPLE / "README.md").read_text()
    recipe = re.search(r"^umask 077\n.*?^mosquitto_passwd -U passwd$", readme, re.M | re.S)
    assert recipe, "README.md's password recipe"
    subprocess.run(["bash", "-euc", recipe.group(0)], cwd=etc, check=True, timeout=30)
    assert ":$7$" in (etc / "passwd").read_text() or ":$6$" in (etc / "passwd").read_text()
    return {user: (etc / f"{user}.secret").read_text().strip() for user in USERS}


class CityBroker:
    """Mosquitto on the shipped config; restartable, keeping its persistence."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.etc, self.data = tmp / "etc", tmp / "data"
        self.etc.mkdir()
        self.data.mkdir()
        pki = make_pki(self.etc)  # ca.crt, server.crt, server.key (and client certs)
        assert {pki["ca_cert"].name, pki["server_cert"].name, pki["server_key"].name} == \
            {"ca.crt", "server.crt", "server.key"}
        self.ca = self.etc / "ca.crt"
        shutil.copy(EXAMPLE / "acl", self.etc / "acl")
        self.secrets = make_passwords(self.etc)
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text(shipped_config(self.port, self.etc, self.data))
        if os.geteuid() == 0:  # as root Mosquitto runs as `mosquitto`: give it its files
            shutil.chown(self.data, "mosquitto", "mosquitto")
            for path in [tmp, self.etc, *self.etc.iterdir()]:
                shutil.chown(path, "mosquitto", "mosquitto")
        self.log = tmp / "mosquitto.log"
        self.proc: Any = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = spawn([mosquitto_binary(), "-c", str(self.conf)], stdout=log, stderr=log)
        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            return _listening(self.port)

        wait_for(up, 15, "the city broker to listen")

    def restart(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # an orderly stop writes the persistence file
        self.proc.wait(10)
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)

    def client(self, user: str | None, client_id: str = "", persistent: bool = False,
               on_message: Any = None) -> paho.Client:
        """A connected MQTT 5 client of `user` (a persistent session if asked)."""
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=paho.MQTTv5)
        client.on_message = on_message
        if user is not None:
            client.username_pw_set(user, self.secrets[user])
        client.tls_set_context(tls_context(self.ca))
        done = threading.Event()
        result: list[Any] = []
        client.on_connect = lambda c, u, f, rc, p: (result.append(rc), done.set())
        props = None
        if persistent:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", self.port, clean_start=not persistent, properties=props)
        client.loop_start()
        assert done.wait(10), "no CONNACK"
        if result[0].is_failure:
            client.loop_stop()
            raise ConnectionError(str(result[0]))
        return client


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Collector:
    """Messages received by a client of `broker` (collected from its first packet on)."""

    def __init__(self, broker: CityBroker, user: str, **kw: Any) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.client = broker.client(user, on_message=self._on_message, **kw)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.got.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float = 20) -> None:
        def holds() -> bool:
            with self.cond:
                return predicate(list(self.got))

        wait_for(holds, timeout, f"messages (have {len(self.got)})", interval=0.2,
                 wake=self.cond)


def subscribe(client: paho.Client, topic: str) -> None:
    """Subscribe and return once the broker has acknowledged it (SUBACK)."""
    acked = threading.Event()
    client.on_subscribe = lambda *_: acked.set()
    client.subscribe(topic, qos=1)
    wait_for(acked.is_set, 10, f"the SUBACK of {topic}")


def _stop(client: paho.Client) -> None:
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def broker_dir() -> Any:
    """A directory the broker's own user can reach (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="ronda-city-broker-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(120)
def test_shipped_city_broker(tmp_path: Path, broker_dir: Path) -> None:
    broker = CityBroker(broker_dir)
    nodes: list[BridgeNode] = []
    try:
        broker.start()
        # The Command Center subscribes with a persistent session, then goes away.
        cc = broker.client("command-center", client_id="command-center-1", persistent=True)
        subscribe(cc, "ronda/v1/+/events")
        _stop(cc)

        private, public = generate_keypair()
        for name in ("rw05", "rw06"):
            secret = tmp_path / f"{name}.secret"
            secret.write_text(broker.secrets[name] + "\n")
            secret.chmod(0o600)
            cfg = node_config(tmp_path, [f"mqtts://127.0.0.1:{broker.port}"], node=name,
                              username=name, password_file=str(secret), ca_file=str(broker.ca),
                              homeassistant=name == "rw05", command_keys=[public],
                              reconnect_min_s=0.2, reconnect_max_s=1.0)
            nodes.append(BridgeNode(cfg).__enter__())
        ha = Collector(broker, "homeassistant")
        ha.client.subscribe("homeassistant/#", qos=1)
        for node in nodes:
            for i in range(PER_NODE):
                node.bus.publish(ObjectEvent(camera="gate", track_id=str(i), phase="start",
                                             label="person", score=0.9))
        wait_for(lambda: not any(n.bridge.events_stored < PER_NODE or n.bridge.outbox.depth()
                                 for n in nodes), 30, "every event stored and acknowledged")
        # Acknowledged by the broker and deleted by the nodes: the broker's queue for the
        # Command Center is now the only copy of 1,100 events. Restart it.
        broker.restart()
        wait_for(lambda: all(n.bridge.link.connected for n in nodes), 20,
                 "the nodes to reconnect")

        cc = Collector(broker, "command-center", client_id="command-center-1",
                       persistent=True)
        cc.wait(lambda got: len({(json.loads(p)["node"], json.loads(p)["seq"])
                                 for _, p in got}) >= 2 * PER_NODE, 30)
        seen = {(json.loads(p)["node"], json.loads(p)["seq"]) for _, p in cc.got}
        assert seen == {(n, s) for n in ("rw05", "rw06") for s in range(1, PER_NODE + 1)}, \
            "every event of the backlog, across the broker restart"
        _stop(cc.client)

        # An operator commands a node and reads its reply.
        op = Collector(broker, "operator-01")
        subscribe(op.client, "ronda/v1/rw05/reply")
        doc = sign_command(private, node="rw05", action="ping", cmd_id="op-ping-1")
        op.client.publish("ronda/v1/rw05/cmd/ping", json.dumps(doc), qos=1)
        op.wait(lambda got: any(b"op-ping-1" in p for _, p in got), 10)
        assert json.loads(op.got[-1][1])["ok"] is True
        _stop(op.client)

        # Home Assistant got rw05's discovery (the old documented ACL denied it silently).
        ha.wait(lambda got: len([t for t, _ in got if t.endswith("/config")]) >= 5, 10)
        _stop(ha.client)
        for node in nodes:
            assert node.bridge.link.refused == {}, "the shipped ACL refuses nothing a node sends"

        # What the ACL refuses: a node writing into another node's tree, or commanding.
        thief = broker.client("rw06")
        codes: list[int] = []
        thief.on_publish = lambda c, u, mid, rc, p: codes.append(rc.value)
        for topic in ("ronda/v1/rw05/events", "ronda/v1/rw05/cmd/siren",
                      "homeassistant/binary_sensor/rw05/panic/config", "ronda/v1/rw06/events"):
            thief.publish(topic, b"{}", qos=1).wait_for_publish(5)
        _stop(thief)
        assert codes == [0x87, 0x87, 0x87, 0], "only its own tree (MQTT 5: 'not authorized')"
        with pytest.raises(ConnectionError):
            broker.client(None)  # anonymous
        broker.secrets["rw05"] = "not the password"
        with pytest.raises(ConnectionError):
            broker.client("rw05")

    finally:
        for node in nodes:
            node.__exit__(None, None, None)
        broker.stop()
