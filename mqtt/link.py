"""The node's connection to the broker: failover, TLS, last will, and the outbox pump.

One `Link.run()` loop owns the connection. Each attempt uses a fresh paho client
(so paho's own in-memory queue never resends anything behind our back): the outbox,
not the MQTT session, is what makes events durable. On every connect the link
publishes `status=online` (retained), subscribes to commands, republishes the retained
state it holds (camera snapshots, outputs, discovery), sends a health report and then
drains the outbox in `seq` order with at most `max_inflight` events unacknowledged.
Events are deleted from the outbox only on PUBACK.

One reconnect policy (`support.backoff.Backoff`: capped exponential, full jitter) after
every failure, a lost connection included, and the next broker URL each time. The backoff
starts afresh only after a connection that lasted (`STABLE_S`) and was not taken over by
another client with our id (a cloned card: reported, and backed off instead of fought).
An alarm stored while disconnected (`wake(urgent=True)`) cuts the wait short once.
A publish the broker refuses (MQTT 5 PUBACK >= 0x80) is counted per topic kind and
logged once per kind and reason per connection.

Example::

    link = Link(settings, Topics("ronda/v1", "rw05"), outbox, health=lambda: {...},
                on_command=lambda action, payload: ...)
    threading.Thread(target=link.run, args=(stop_event,)).start()
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from mqtt.outbox import Outbox, clean_json
from mqtt.settings import Broker, MqttSettings
from mqtt.topics import Topics
from support.backoff import Backoff

log = logging.getLogger(__name__)
# paho's own messages (e.g. "Client is not connected" when its thread ends after our
# disconnect) are noise next to what the link logs; kept out of the journal.
PAHO_LOG = logging.getLogger("mqtt.paho")
PAHO_LOG.setLevel(logging.CRITICAL)

CONNACK_WAIT_S = 10.0
PROTOCOL_REFUSALS = {1, 132}  # 3.1.1 "unacceptable protocol version", 5 "unsupported"
# MQTT 5 PUBACK refusals that may pass (quota, an ACL being fixed, the broker's own
# trouble): the event stays in the outbox and is sent again later, with backoff. Other
# refusals (topic or payload invalid: sending it again would not help) delete it.
RETRY_REFUSALS = {
    0x80: "unspecified error", 0x83: "implementation specific error",
    0x87: "not authorized", 0x91: "packet identifier in use", 0x97: "quota exceeded"}
NOT_AUTHORIZED = 0x87
SESSION_TAKEN_OVER = 0x8E  # MQTT 5 DISCONNECT: another client connected with our id
# A connection that lasted this long (and saw no clone) resets the backoff; a shorter one
# counts as a failure.
STABLE_S = 10.0
TAKEN_OVER = "another client uses this node id"
URGENT_GAP_S = 1.0  # alarms while disconnected: at most one extra connect try per second


def encode(doc: dict[str, Any]) -> bytes:
    """Compact, strict JSON for the wire (NumPy values, NaN and tuples made plain)."""
    return json.dumps(clean_json(doc), separators=(",", ":"), allow_nan=False).encode()


def tls_context(ca_file: Any = None, cert_file: Any = None,
                key_file: Any = None) -> ssl.SSLContext:
    """The one TLS client context of the project (link, operator tools, `ronda doctor`):
    the system CAs unless `ca_file`, hostname checked, a client certificate if given."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert_file:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return context


def reason_name(code: int, packet: int = PacketTypes.PUBACK) -> str:
    """The MQTT 5 name of a reason code, e.g. 0x87 -> 'Not authorized'."""
    try:
        return ReasonCode(packet, identifier=code).getName()
    except (KeyError, ValueError):
        return "unknown reason"


def _no_delay(client: paho.Client) -> None:
    """Send small packets at once: paho leaves Nagle on, which delays a PUBACK that
    follows a reply by a delayed-ACK period (about 40 ms on Linux)."""
    sock = client.socket()
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _alive(client: paho.Client) -> bool:
    """paho still has a connected socket (it may lose it before telling us)."""
    return client.is_connected() and client.socket() is not None


class Link:
    """Keeps one node connected and publishes its outbox, state and health."""

    def __init__(self, settings: MqttSettings, topics: Topics, outbox: Outbox, *,
                 health: Callable[[], dict[str, Any]],
                 on_command: Callable[[str, bytes], None],
                 password: str | None = None,
                 client_id: str | None = None,
                 listen: dict[str, Callable[[bytes], None]] | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.outbox = outbox
        self.health = health
        self.on_command = on_command
        self.listen = dict(listen or {})  # other exact topics to subscribe to, and handlers
        self.password = password
        self.client_id = client_id or f"ronda-{topics.node}"
        self.brokers = [Broker.parse(u) for u in settings.brokers]
        self._protocol = {b.url: settings.protocol for b in self.brokers}
        self._wake = threading.Condition()
        self._retained: dict[str, bytes] = {}  # topic -> latest retained payload
        self._dirty: set[str] = set()  # retained topics to (re)publish
        self._client: paho.Client | None = None
        self._connected = False
        self._inflight: dict[int, int] = {}  # mid -> seq
        self._acked: list[int] = []
        self._early_acks: dict[int, tuple[int, int]] = {}  # mid -> (ack number, code)
        self._ack_count = 0
        self._kick = False
        self._generation = 0
        self._refused: dict[int, int] = {}  # seq -> reason code, kept to send again later
        self._retry_at = 0.0  # monotonic time of the next resend of refused events
        self._kinds: dict[int, str] = {}  # mid -> topic kind of a non-event publish
        self._logged: set[tuple[str, int]] = set()  # (kind, code) logged this connection
        self._urgent = False  # an alarm was stored while disconnected: try at once
        self._last_try = 0.0  # monotonic time of the last connect attempt
        self._taken_over = False  # this connection met another client with our id
        # An MQTT 5 user property of our `online`, `offline` and last will: a retained
        # status of another instance, found on a reconnect, was left by a clone.
        self.instance = uuid.uuid4().hex[:16]
        # The one retry policy, for connections and for events the broker refused.
        self.backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._refusal_backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        # figures
        self.broker = ""
        self.protocol = ""
        self.connects = 0
        self.disconnects = 0
        self.published = 0
        self.rejected = 0  # refused for good by the broker (deleted)
        self.refusals = 0  # refused for now (kept, sent again later)
        self.refused: dict[str, int] = {}  # publishes the broker refused, per topic kind
        self.takeovers = 0  # connections taken over by another client with our id
        self.urgent_tries = 0  # backoff waits cut short by a stored alarm
        self.last_error = ""
        self.connected_since: float | None = None

    # -- from other threads ------------------------------------------------------------
    def wake(self, urgent: bool = False) -> None:
        """Something new to publish (an event entered the outbox). `urgent` (an alarm):
        while disconnected, cut the reconnect wait short and try at once; the backoff
        then goes on where it was."""
        with self._wake:
            self._kick = True
            if urgent and not self._connected:
                self._urgent = True
            self._wake.notify_all()

    def set_retained(self, topic: str, payload: bytes) -> None:
        """Keep `payload` as the retained state of `topic`; published now or on connect."""
        with self._wake:
            self._retained[topic] = payload
            self._dirty.add(topic)
            self._wake.notify_all()

    def republish(self, prefix: str) -> None:
        """Send again the retained state whose topic starts with `prefix`."""
        with self._wake:
            self._dirty |= {t for t in self._retained if t.startswith(prefix)}
            self._wake.notify_all()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Fire-and-forget publish (command replies); False when not connected."""
        client = self._client
        if client is None or not self._connected:
            return False
        return self._send(client, topic, payload, qos=qos).rc == paho.MQTT_ERR_SUCCESS

    @property
    def connected(self) -> bool:
        return self._connected

    def stats(self) -> dict[str, Any]:
        """Figures for the health report."""
        return {
            "connected": self._connected, "broker": self.broker, "protocol": self.protocol,
            "connects": self.connects, "disconnects": self.disconnects,
            "published": self.published, "rejected": self.rejected,
            "refusals": self.refusals, "refused_waiting": len(self._refused),
            "refused": dict(self.refused), "takeovers": self.takeovers,
            "urgent_tries": self.urgent_tries,
            "inflight": len(self._inflight), "last_error": self.last_error,
        }

    def kind(self, topic: str) -> str:
        """The kind of a published topic, as counted in `refused`: status, health, events,
        event_snapshot, camera_snapshot, outputs, reply; `discovery` outside the node's
        tree (Home Assistant's configs are the only thing published there)."""
        root = self.topics.root + "/"
        if not topic.startswith(root):
            return "discovery"
        parts = topic[len(root):].split("/")
        if parts[0] == "events" and len(parts) > 1:
            return "event_snapshot"
        if parts[0] == "cameras":
            return "camera_snapshot"
        return parts[0]

    # -- the loop -----------------------------------------------------------------------
    def run(self, stopping: threading.Event, beat: Callable[[], None] = lambda: None) -> None:
        """Connect, pump, reconnect, until `stopping` is set; then say `offline`.

        After every failure or lost connection: the next broker, after a backoff delay.
        """
        index = 0
        while not stopping.is_set():
            broker = self.brokers[index % len(self.brokers)]
            beat()
            lasted = self._session(broker, stopping, beat)
            if stopping.is_set():
                break
            index += 1
            if lasted is not None and lasted >= STABLE_S and not self._taken_over:
                self.backoff.reset()  # it worked for a while: start the backoff afresh
            wait = self.backoff.next_delay()
            log.info("mqtt: %s; next try (%s) in %.1f s",
                     "connection lost" if lasted is not None else "not connected",
                     self.brokers[index % len(self.brokers)].url, wait)
            self._sleep(stopping, wait, beat)

    def _sleep(self, stopping: threading.Event, seconds: float,
               beat: Callable[[], None]) -> None:
        """Wait `seconds`, or less when an alarm is stored meanwhile (`wake(urgent)`): then
        try at once, or `URGENT_GAP_S` after the last try if that was more recent (a
        button pressed again and again must not become a connect attempt per press)."""
        end = time.monotonic() + seconds
        while not stopping.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            beat()
            with self._wake:
                if self._urgent:
                    self._urgent = False
                    soon = self._last_try + URGENT_GAP_S
                    if soon < end:
                        end = soon
                        self.urgent_tries += 1
                        log.info("mqtt: alarm stored while disconnected; next try in "
                                 "%.1f s instead of %.1f s", max(0.0, end - time.monotonic()),
                                 left)
                    continue
                self._wake.wait(min(0.25, left))

    def _make_client(self, broker: Broker, protocol: str) -> paho.Client:
        version = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
        kwargs: dict[str, Any] = {"protocol": version, "reconnect_on_failure": False}
        if version == paho.MQTTv311:
            kwargs["clean_session"] = True
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, **kwargs)
        client.max_inflight_messages_set(max(20, self.settings.max_inflight + 8))
        client.max_queued_messages_set(0)
        client.connect_timeout = 5.0
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.password)
        if broker.tls:
            client.tls_set_context(tls_context(self.settings.ca_file, self.settings.cert_file,
                                               self.settings.key_file))
        client.enable_logger(PAHO_LOG)  # not paho's stderr prints; the link logs what matters
        client.will_set(self.topics.status, b"offline", qos=1, retain=True,
                        properties=self._instance_props(protocol, PacketTypes.WILLMESSAGE))
        return client

    def _instance_props(self, protocol: str,
                        packet: int = PacketTypes.PUBLISH) -> Properties | None:
        """MQTT 5 user property `instance` of our status messages (clone detection)."""
        if protocol != "5":
            return None
        props = Properties(packet)
        props.UserProperty = ("instance", self.instance)
        return props

    def _session(self, broker: Broker, stopping: threading.Event,
                 beat: Callable[[], None]) -> float | None:
        """One connection from attempt to loss: how long it was connected (seconds), or
        None if it never was."""
        protocol = self._protocol[broker.url]
        self._last_try = time.monotonic()
        self._generation += 1
        self._taken_over = False
        gen = self._generation
        connack = threading.Event()
        result: dict[str, Any] = {}
        client = self._make_client(broker, protocol)

        def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            result["rc"] = int(getattr(reason, "value", reason))
            result["reason"] = str(reason)
            connack.set()

        def on_disconnect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
            if int(getattr(reason, "value", 0) or 0) == SESSION_TAKEN_OVER:
                self._takeover(broker, "the broker says our session was taken over")
            if gen == self._generation:
                with self._wake:
                    self._connected = False
                    self._wake.notify_all()
            connack.set()

        def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
            if gen != self._generation:
                return
            code = int(getattr(reason, "value", reason) or 0)
            with self._wake:
                seq = self._inflight.pop(mid, None)
                if seq is not None:
                    self._ack(seq, code)
                    return
                kind = self._kinds.pop(mid, None)
                if kind is not None:
                    self._note_ack(kind, code)
                    return
                # acked before the sender recorded the mid (or QoS 0): kept for it
                self._ack_count += 1
                self._early_acks[mid] = (self._ack_count, code)

        def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
            try:
                if msg.topic == self.topics.status:
                    self._check_status(broker, msg)
                elif msg.topic in self.listen:
                    self.listen[msg.topic](bytes(msg.payload))
                else:
                    self.on_command(msg.topic.rsplit("/", 1)[-1], bytes(msg.payload))
            except Exception:
                log.exception("mqtt: handler of %s failed", msg.topic)

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.on_publish = on_publish
        client.on_message = on_message
        properties = None
        if protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 0
        try:
            clean = True if protocol == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY
            client.connect(broker.host, broker.port, keepalive=self.settings.keepalive_s,
                           clean_start=clean, properties=properties)
        except (OSError, ValueError, ssl.SSLError) as exc:
            self.last_error = f"{broker.url}: {exc}"
            log.warning("mqtt: cannot connect to %s: %s", broker.url, exc)
            return None
        _no_delay(client)
        client.loop_start()
        try:
            deadline = time.monotonic() + CONNACK_WAIT_S
            while not connack.wait(0.5):
                beat()
                if stopping.is_set() or time.monotonic() > deadline:
                    break
            rc = result.get("rc")
            if rc != 0:
                self._connect_failed(broker, protocol, rc, result.get("reason", "no CONNACK"))
                return None
            if not self._on_connected(client, broker, protocol):
                return None
            since = time.monotonic()
            self._pump(client, stopping, beat)
            return time.monotonic() - since
        finally:
            self._finish(client, stopping.is_set())

    def _check_status(self, broker: Broker, msg: paho.MQTTMessage) -> None:
        """Our own retained `status`, heard on connect. `online`, `offline` and the will
        carry our instance (MQTT 5 user property): on a *re*connect, a status of another
        instance means another client used our id in between (on the first connect it is
        only a previous run of ours)."""
        if not msg.retain or self.connects < 2:
            return
        props = getattr(msg, "properties", None)
        pairs = getattr(props, "UserProperty", None) or []
        other = dict(pairs).get("instance")
        if other and other != self.instance:
            self._takeover(broker, f"instance {other} was on our status topic meanwhile")

    def _takeover(self, broker: Broker, how: str) -> None:
        """Another client uses our id: report it; this connection then does not reset the
        backoff, so the two back off instead of knocking each other off in a loop."""
        if self._taken_over:
            return
        self._taken_over = True
        self.takeovers += 1
        self.last_error = (f"{broker.url}: {TAKEN_OVER} ({self.client_id}; {how}): a cloned "
                           "card or a second daemon? backing off instead of fighting for it")
        log.warning("mqtt: %s", self.last_error)

    def _connect_failed(self, broker: Broker, protocol: str, rc: int | None,
                        reason: str) -> None:
        self.last_error = f"{broker.url}: connection refused: {reason}"
        log.warning("mqtt: %s refused MQTT %s: %s", broker.url, protocol, reason)
        if protocol == "5" and (rc is None or rc in PROTOCOL_REFUSALS):
            self._protocol[broker.url] = "3.1.1"  # try the older protocol next time
        elif protocol == "3.1.1" and self.settings.protocol == "5":
            self._protocol[broker.url] = "5"

    def _on_connected(self, client: paho.Client, broker: Broker, protocol: str) -> bool:
        """Take the connection into use; False if it was already lost again (between the
        CONNACK and now: `on_disconnect` ran before us and must not be overwritten)."""
        with self._wake:
            if not _alive(client):
                self.last_error = f"{broker.url}: connection lost right after CONNACK"
                log.warning("mqtt: %s", self.last_error)
                return False
            self._client = client
            self._connected = True
            self._inflight.clear()
            self._early_acks.clear()
            self._acked.clear()
            self._refused.clear()  # still stored: sent again with the whole outbox
            self._kinds.clear()
            self._logged.clear()
            self._urgent = False
            self._dirty = set(self._retained)
            self.last_error = ""  # connected: whatever kept us away is over
        self.connects += 1
        self.broker, self.protocol = broker.url, protocol
        self.connected_since = time.time()
        log.info("mqtt: connected to %s (MQTT %s)", broker.url, protocol)
        # Subscribe before saying `online`: the broker handles a client's packets in
        # order, so whoever reacts to `online` with a command finds us listening.
        topics = [self.topics.commands, *self.listen]
        if protocol == "5":
            topics.append(self.topics.status)  # clone detection (see `_check_status`)
        client.subscribe([(t, 1) for t in topics])
        self._send(client, self.topics.status, b"online", retain=True,
                   properties=self._instance_props(protocol))
        return True

    def _send(self, client: paho.Client, topic: str, payload: bytes, *, qos: int = 1,
              retain: bool = False, properties: Properties | None = None
              ) -> paho.MQTTMessageInfo:
        """Publish a non-event message, remembering its kind so a refusal is counted."""
        kind = self.kind(topic)
        with self._wake:
            before = self._ack_count
        info = client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if info.rc == paho.MQTT_ERR_SUCCESS and qos > 0:
            with self._wake:
                early = self._early_acks.pop(info.mid, None)
                if early is not None and early[0] > before:
                    self._note_ack(kind, early[1])
                else:
                    self._kinds[info.mid] = kind
        return info

    def _note_ack(self, kind: str, code: int) -> None:
        """A PUBACK of a non-event message (call with `_wake` held): count a refusal."""
        if code < 0x80:
            return
        self._count_refusal(kind, code)

    def _count_refusal(self, kind: str, code: int) -> None:
        """Count a refused publish per kind; log it once per kind and reason per
        connection, with the broker's reason (call with `_wake` held)."""
        self.refused[kind] = self.refused.get(kind, 0) + 1
        if (kind, code) in self._logged:
            return
        self._logged.add((kind, code))
        why = f"broker refused a publish to {kind}: {reason_name(code)} (0x{code:02x})"
        if kind != "events":
            self.last_error = why
        hint = " -- check the broker's ACL for this node" if code == NOT_AUTHORIZED else ""
        log.error("mqtt: %s%s (logged once per kind; counted in health mqtt.refused)",
                  why, hint)

    def _ack(self, seq: int, code: int) -> None:
        """Record a PUBACK (call with `_wake` held)."""
        if code >= 0x80:
            self._count_refusal("events", code)
        if code in RETRY_REFUSALS:  # MQTT 5: refused for now; kept, sent again later
            self.refusals += 1
            if not self._refused:
                self._retry_at = time.monotonic() + self._refusal_backoff.next_delay()
            self._refused[seq] = code
            self.last_error = (f"broker refused event seq {seq}: {RETRY_REFUSALS[code]} "
                               f"(0x{code:02x}); kept, sent again later")
            self._wake.notify_all()
            return
        if code >= 0x80:  # MQTT 5: the broker refused it; retrying would not help
            self.rejected += 1
            log.warning("mqtt: broker refused event seq %d for good (reason 0x%02x)", seq, code)
        elif not self._refused:  # accepted again: forget the refusal
            self._refusal_backoff.reset()
            if self.last_error.startswith("broker refused event"):
                self.last_error = ""
        self._acked.append(seq)
        self._wake.notify_all()

    def _pump(self, client: paho.Client, stopping: threading.Event,
              beat: Callable[[], None]) -> None:
        """Publish retained state, health and the outbox until the connection ends.

        paho calls `on_publish` while holding its own lock, so no paho call is made
        here while `_wake` is held (that would deadlock).
        """
        sent_upto = 0
        next_health = 0.0
        while not stopping.is_set():
            beat()
            with self._wake:
                if self._connected and not _alive(client):
                    self._down("connection lost (paho no longer connected)")
                if not self._connected:
                    break
                self._kick = False
                acked, self._acked = self._acked, []
                dirty, self._dirty = self._dirty, set()
                retained = [(t, self._retained[t]) for t in dirty]
                room = self.settings.max_inflight - len(self._inflight)
            if acked:
                self.outbox.remove(acked)
            for topic, payload in retained:
                self._send(client, topic, payload, retain=True)
            if time.monotonic() >= next_health:
                self._publish_health(client)
                next_health = time.monotonic() + self.settings.health_interval_s
            more = False
            again = self._due_refusals(room)
            room -= len(again)
            if room > 0 or again:
                items = self.outbox.pending(after=sent_upto, limit=room) if room > 0 else []
                more = room > 0 and len(items) == room
                for item in again + items:
                    if item.snapshot:
                        self._send(client, self.topics.event_snapshot(item.id), item.snapshot)
                    with self._wake:
                        before = self._ack_count
                    info = client.publish(self.topics.events, item.payload, qos=1)
                    if info.rc != paho.MQTT_ERR_SUCCESS:
                        if info.rc == paho.MQTT_ERR_NO_CONN:  # not "try again": it is gone
                            with self._wake:
                                self._down("publish: not connected")
                        more = False
                        break
                    with self._wake:
                        early = self._early_acks.pop(info.mid, None)
                        if early is not None and early[0] > before:
                            self._ack(item.seq, early[1])
                        else:
                            self._inflight[info.mid] = item.seq
                    sent_upto = max(sent_upto, item.seq)
                    self.published += 1
            with self._wake:
                self._early_acks.clear()  # what is left: stale (their senders looked already)
                if self._connected and not (self._kick or self._acked or self._dirty or more):
                    wake_at = min(next_health, self._retry_at if self._refused else next_health)
                    self._wake.wait(min(1.0, max(0.01, wake_at - time.monotonic())))

    def _due_refusals(self, room: int) -> list[Any]:
        """Refused events whose time to be sent again has come (oldest first, at most
        `room`), still in the outbox; the delay follows the backoff policy."""
        with self._wake:
            if not self._refused or time.monotonic() < self._retry_at or room <= 0:
                return []
            seqs = sorted(self._refused)[:room]
            for seq in seqs:
                del self._refused[seq]
            self._retry_at = time.monotonic() + self._refusal_backoff.next_delay()
        items = []
        for seq in seqs:
            found = self.outbox.pending(after=seq - 1, limit=1)
            if found and found[0].seq == seq:
                items.append(found[0])
        return items

    def _down(self, why: str) -> None:
        """The connection is gone though no `on_disconnect` said so (call with `_wake`
        held): end the session so that `run` reconnects."""
        if self._connected:
            self.last_error = why
            log.warning("mqtt: %s; reconnecting", why)
        self._connected = False
        self._wake.notify_all()

    def _publish_health(self, client: paho.Client) -> None:
        try:
            doc = self.health()
        except Exception as exc:
            log.exception("mqtt: health report failed")
            doc = {"error": repr(exc)}
        self._send(client, self.topics.health, encode(doc), retain=True)

    def _finish(self, client: paho.Client, orderly: bool) -> None:
        if orderly and self._connected:
            info = client.publish(self.topics.status, b"offline", qos=1, retain=True,
                                  properties=self._instance_props(self.protocol))
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(1.5)
        client.disconnect()  # a DISCONNECT discards the will; harmless on a dead socket
        was = self._client is client
        with self._wake:
            self._connected = False
            self._client = None
            self._inflight.clear()
            acked, self._acked = self._acked, []
        if acked:
            self.outbox.remove(acked)
        client.loop_stop()
        if was or orderly:
            self.disconnects += 1
            self.connected_since = None
            log.info("mqtt: disconnected from %s", self.broker)
