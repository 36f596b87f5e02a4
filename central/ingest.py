"""The ingest worker: one MQTT 5 persistent session, a writer thread with group commit.

Why it is built this way:

- **Nothing missed.** The session is persistent (`clean_start=False`, a session expiry),
  with a fixed client id per worker, so while the worker or the broker is down (broker with
  `persistence true`) the broker queues every QoS 1 message for it. Messages are
  acknowledged by hand (paho `manual_ack`) only *after* the transaction that stores them
  has committed: a kill -9 between receipt and commit leaves them unacknowledged, and the
  broker sends them again on the next connect.
- **Group commit.** `on_message` only queues; one writer thread stores everything waiting
  in one transaction (one fsync) and then acknowledges it. A burst of a thousand panics
  costs a handful of commits, not a thousand.
- **Several workers.** Events, event snapshots and replies are subscribed through a shared
  subscription (`$share/<group>/...`): the broker hands each message to one worker of the
  group, so a city adds workers instead of a bigger machine. The retained state topics
  (status, health, outputs, camera snapshots) are subscribed by every worker without
  sharing, because a broker does not send retained messages to a shared subscription (MQTT 5,
  4.8.2); their writes are idempotent, so hearing them twice changes nothing.
  Measured limit: Mosquitto 2.0 does not restore shared subscriptions from its persistence
  file, so events published after a broker restart and before the workers resubscribe are
  lost to a `$share` group (the console shows them as a seq gap, "N events lost"). One
  worker without a group (the default) keeps its plain subscription across the restart.
- **Duplicates.** QoS 1 means "at least once": an event id seen before is counted, not
  stored again (`events.id` is the primary key).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from central.db import Database
from central.mqtt_client import ClientOptions
from central.store import Message, Outcome, Store
from mqtt.settings import Broker
from support.backoff import Backoff

log = logging.getLogger(__name__)

SHARED = ("events", "events/+/snapshot", "reply")
STATE = ("status", "health", "outputs/+", "cameras/+/snapshot")


def subscriptions(prefix: str, group: str | None) -> list[tuple[str, SubscribeOptions]]:
    """The topic filters of a worker: shared ones for events/replies, plain ones for state.

    The state filters ask for retained messages only when the subscription is new (MQTT 5
    retain handling 1): resubscribing on every reconnect must not make the broker send every
    post's retained health and camera JPEG again.
    """
    share = f"$share/{group}/" if group else ""
    once = SubscribeOptions(qos=1, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
    return ([(f"{share}{prefix}/+/{t}", SubscribeOptions(qos=1)) for t in SHARED]
            + [(f"{prefix}/+/{t}", once) for t in STATE])


class IngestWorker:
    """Subscribes under `prefix` and stores what it hears into `db`."""

    def __init__(self, db: Database, opts: ClientOptions, *, prefix: str = "ronda/v1",
                 client_id: str = "ronda-central-ingest-1", group: str | None = None,
                 session_expiry_s: int = 7 * 86400, batch_max: int = 500,
                 on_change: Callable[[Outcome], None] | None = None) -> None:
        self.db = db
        self.opts = opts
        self.prefix = prefix.rstrip("/")
        self.client_id = client_id
        self.group = group
        self.session_expiry_s = session_expiry_s
        self.batch_max = batch_max
        self.on_change = on_change
        self.store = Store(self.prefix)
        self.inbox: queue.Queue[tuple[Message, int, int] | None] = queue.Queue()
        self.connected = threading.Event()
        self.stopping = threading.Event()
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self.batches = 0
        self.db_errors = 0
        self.last_error: str | None = None
        self._writer: threading.Thread | None = None
        self.client = self._make_client()

    def _make_client(self) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=paho.MQTTv5, manual_ack=True)
        if self.opts.username is not None:
            client.username_pw_set(self.opts.username, self.opts.password)
        broker = Broker.parse(self.opts.broker)
        if broker.tls or self.opts.ca_file or self.opts.cert_file:
            import ssl

            context = ssl.create_default_context(
                cafile=str(self.opts.ca_file) if self.opts.ca_file else None)
            if self.opts.cert_file:
                context.load_cert_chain(str(self.opts.cert_file),
                                        str(self.opts.key_file) if self.opts.key_file else None)
            client.tls_set_context(context)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        self._broker = broker
        return client

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> IngestWorker:
        self._writer = threading.Thread(target=self._write_loop, name="central-ingest-writer",
                                        daemon=True)
        self._writer.start()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        try:
            self.client.connect(self._broker.host, self._broker.port, keepalive=30,
                                clean_start=False, properties=props)
        except OSError as exc:  # broker not up yet: paho's loop keeps trying
            log.warning("broker %s: %s; retrying", self.opts.broker, exc)
            self.client.connect_async(self._broker.host, self._broker.port, keepalive=30,
                                      clean_start=False, properties=props)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        """Store what was received, acknowledge it, then disconnect (the session stays)."""
        self.stopping.set()
        self.inbox.put(None)
        if self._writer is not None:
            self._writer.join(30)
        self.client.disconnect()
        self.client.loop_stop()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _on_connect(self, client: paho.Client, _u: Any, flags: Any, reason: Any,
                    _p: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused: {reason}"
            log.error("broker %s refused the ingest: %s", self.opts.broker, reason)
            return
        sock = client.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Subscribe on every connect, even to a resumed session: Mosquitto 2.0 does not
        # restore *shared* subscriptions from its persistence file after a restart (found by
        # test_broker_restart_...). Subscribing again is harmless: the same filters replace
        # themselves, and the retained copies it brings are idempotent writes.
        client.subscribe(subscriptions(self.prefix, self.group))
        log.info("ingest %s connected to %s (session %s)", self.client_id, self.opts.broker,
                 "resumed" if flags.session_present else "new")
        self.connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if not self.stopping.is_set():
            log.warning("ingest %s lost the broker: %s", self.client_id, reason)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        self.inbox.put((Message(msg.topic, bytes(msg.payload), time.time(), bool(msg.retain)),
                        msg.mid, msg.qos))

    # -- writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        backoff = Backoff(0.2, 10.0, min_s=0.1)
        while True:
            first = self.inbox.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.batch_max:
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.inbox.put(None)
                    break
                batch.append(item)
            while True:
                try:
                    outcome = self.write([m for m, _, _ in batch])
                    backoff.reset()
                    break
                except Exception as exc:  # database down or a conflict: keep the batch
                    self.db_errors += 1
                    self.last_error = f"database: {exc}"
                    log.warning("storing %d messages failed (%s); retrying", len(batch), exc)
                    if self.stopping.is_set():
                        return  # unacknowledged: the broker sends them again
                    time.sleep(backoff.next_delay())
            for _, mid, qos in batch:
                if qos > 0:
                    self.client.ack(mid, qos)
            if self.on_change is not None:
                self.on_change(outcome)

    def write(self, messages: list[Message]) -> Outcome:
        """Store `messages` in one transaction (sorted by node: a fixed lock order)."""
        out = Outcome()
        ordered = sorted(messages, key=lambda m: m.topic[len(self.prefix) + 1:].split("/")[0])
        with self.db.tx() as cur:
            self.store.apply_all(cur, ordered, out)
        self.store.committed(out)
        self.batches += 1
        self.stored += out.events
        self.duplicates += out.duplicates
        self.rejected += out.rejected
        return out
