"""What the ingest does with one message: validate it, then store it idempotently.

Every message under `<prefix>/<node>/...` is checked against the node contract's JSON
Schemas (`mqtt/schemas/`); a payload that fails is kept in `rejects` (topic, reason, the
first bytes) and counted, never silently dropped. Writes are idempotent, so a message
delivered twice (QoS 1 redelivery, a state topic heard by every worker) changes nothing
the second time: events by their `id`, health by (node, ts), state topics by upsert.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from central.db import Cursor
from central.views import health_problems
from mqtt import schema

NODE = re.compile(r"^[a-z0-9-]+$")
ALARM_TYPES = ("panic", "alarm")
MAX_REJECT_BYTES = 512


@dataclass
class Message:
    """One MQTT message as the ingest received it."""

    topic: str
    payload: bytes
    received: float = field(default_factory=time.time)
    retain: bool = False


@dataclass
class Outcome:
    """What a batch did: the console's live view reacts to `alarms_changed`."""

    events: int = 0
    duplicates: int = 0
    rejected: int = 0
    alarms_changed: int = 0
    # per node: [new events, duplicates, min seq, max seq, last received], written once
    # per batch by `Store.finish` (one UPDATE per node, not one per event)
    counters: dict[str, list] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)


_VALIDATORS: dict[str, Any] = {}


def validator(name: str) -> Any:
    if name not in _VALIDATORS:
        doc = schema.load(name)
        _VALIDATORS[name] = jsonschema.Draft202012Validator(doc)
    return _VALIDATORS[name]


class Rejected(ValueError):
    """A payload that breaks the contract; the message says how."""


def parse(name: str, payload: bytes) -> dict[str, Any]:
    """The JSON document of a payload, valid against the schema `name`, or Rejected."""
    try:
        doc = json.loads(payload)
    except ValueError as exc:
        raise Rejected(f"not JSON: {exc}") from None
    error = next(iter(validator(name).iter_errors(doc)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        raise Rejected(f"{name} schema: {where}: {error.message}"[:300])
    return doc


class Store:
    """Writes messages of one topic prefix into the database, in the caller's transaction."""

    def __init__(self, prefix: str = "ronda/v1") -> None:
        self.prefix = prefix.rstrip("/")
        self.known: set[str] = set()  # node rows committed: no INSERT needed for them

    def committed(self, out: Outcome) -> None:
        """Call after the batch's transaction committed."""
        self.known |= out.nodes

    def finish(self, cur: Cursor, out: Outcome) -> None:
        """The batch's per-node counters, in node order (a fixed lock order)."""
        for node in sorted(out.counters):
            new, dups, lo, hi, seen = out.counters[node]
            cur.execute(
                "UPDATE nodes SET events = events + ?, duplicates = duplicates + ?,"
                " last_seen = CASE WHEN last_seen IS NULL OR last_seen < ? THEN ? ELSE last_seen"
                " END,"
                " min_seq = CASE WHEN ? IS NOT NULL AND (min_seq IS NULL OR ? < min_seq) THEN ?"
                " ELSE min_seq END,"
                " max_seq = CASE WHEN ? IS NOT NULL AND (max_seq IS NULL OR ? > max_seq) THEN ?"
                " ELSE max_seq END WHERE id = ?",
                (new, dups, seen, seen, lo, lo, lo, hi, hi, hi, node))

    def split(self, topic: str) -> tuple[str, str] | None:
        """(node, topic below the node root) or None for a topic outside the contract."""
        if not topic.startswith(self.prefix + "/"):
            return None
        node, _, rest = topic[len(self.prefix) + 1:].partition("/")
        if not NODE.match(node) or not rest:
            return None
        return node, rest

    def apply_all(self, cur: Cursor, messages: list[Message], out: Outcome) -> None:
        """Store a batch: events together (one round trip on PostgreSQL), the rest one by one,
        then the per-node counters."""
        events: list[tuple[str, dict[str, Any], Message]] = []
        for msg in messages:
            where = self.split(msg.topic)
            if where is None or where[1] != "events":
                self.apply(cur, msg, out)
                continue
            try:
                doc = parse("event", msg.payload)
                if doc["node"] != where[0]:
                    raise Rejected(f"event names node {doc['node']!r} on {where[0]!r}'s topic")
                events.append((where[0], doc, msg))
            except Rejected as exc:
                self._reject(cur, msg, exc, out)
        if events:
            self._events(cur, events, out)
        self.finish(cur, out)

    def apply(self, cur: Cursor, msg: Message, out: Outcome) -> None:
        """Store one message other than an event (raises only on database errors)."""
        where = self.split(msg.topic)
        if where is None:
            return
        node, rest = where
        parts = rest.split("/")
        try:
            if len(parts) == 3 and parts[0] == "events" and parts[2] == "snapshot":
                self._snapshot(cur, node, parts[1], msg, out)
            elif rest == "status":
                self._status(cur, node, msg, out)
            elif rest == "health":
                self._health(cur, node, parse("health", msg.payload), msg, out)
            elif len(parts) == 2 and parts[0] == "outputs":
                self._output(cur, node, parse("output", msg.payload), msg, out)
            elif len(parts) == 3 and parts[0] == "cameras" and parts[2] == "snapshot":
                self._camera(cur, node, parts[1], msg, out)
            elif rest == "reply":
                self._reply(cur, node, parse("reply", msg.payload), msg, out)
            # cmd/<action> is ours (and operators'); anything else is not in the contract
        except Rejected as exc:
            self._reject(cur, msg, exc, out)

    @staticmethod
    def _reject(cur: Cursor, msg: Message, exc: Rejected, out: Outcome) -> None:
        out.rejected += 1
        cur.execute("INSERT INTO rejects (topic, error, payload, received) VALUES (?,?,?,?)",
                    (msg.topic, str(exc),
                     msg.payload[:MAX_REJECT_BYTES].decode("utf-8", "replace"), msg.received))

    # -- one kind each ---------------------------------------------------------------------
    def _node(self, cur: Cursor, node: str, now: float, out: Outcome) -> None:
        if node in self.known or node in out.nodes:
            return
        cur.execute("INSERT INTO nodes (id, first_seen, last_seen) VALUES (?,?,?) "
                    "ON CONFLICT (id) DO NOTHING", (node, now, now))
        out.nodes.add(node)

    def _events(self, cur: Cursor, events: list[tuple[str, dict[str, Any], Message]],
                out: Outcome) -> None:
        """Insert events, dropping ids already stored; count, and raise alarms for new ones."""
        sql = ("INSERT INTO events (id, node, seq, type, kind, phase, alarm_id, camera, ts,"
               " received, doc) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO NOTHING")
        rows = []
        for node, doc, msg in events:
            self._node(cur, node, msg.received, out)
            rows.append((doc["id"], node, doc["seq"], doc["type"], doc.get("kind"),
                         doc.get("phase"), doc.get("alarm_id"), doc.get("camera"), doc["ts"],
                         msg.received, json.dumps(doc, separators=(",", ":"))))
        inserted: set[str] = set()
        if cur.db.dialect == "postgresql":  # one pipelined round trip for the whole batch
            cur.cur.executemany(cur.db.sql(sql + " RETURNING id"), rows, returning=True)
            while True:
                inserted.update(r[0] for r in cur.cur.fetchall())
                if not cur.cur.nextset():
                    break
        else:
            for row in rows:
                if cur.execute(sql, row).rowcount:
                    inserted.add(row[0])
        for node, doc, msg in events:
            counter = out.counters.setdefault(node, [0, 0, None, None, msg.received])
            counter[4] = max(counter[4], msg.received)
            if doc["id"] not in inserted:  # stored before, or twice in this batch
                out.duplicates += 1
                counter[1] += 1
                continue
            inserted.discard(doc["id"])
            out.events += 1
            seq = doc["seq"]
            counter[0] += 1
            counter[2] = seq if counter[2] is None else min(counter[2], seq)
            counter[3] = seq if counter[3] is None else max(counter[3], seq)
            if doc["type"] in ALARM_TYPES:
                self._alarm(cur, node, doc, msg, out)

    @staticmethod
    def _alarm(cur: Cursor, node: str, doc: dict[str, Any], msg: Message, out: Outcome) -> None:
        out.alarms_changed += 1
        if doc["phase"] == "raised":
            cur.execute(
                "INSERT INTO alarms (node, alarm_id, kind, source, raised_ts, received, updated,"
                " presses) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (node, alarm_id) DO NOTHING",
                (node, doc["alarm_id"], doc["kind"], doc["source"], doc["ts"], msg.received,
                 msg.received, int(doc.get("presses") or 1)))
        else:  # a later phase at the post (silenced, cleared, recovered): shown on the alarm
            cur.execute(
                "INSERT INTO alarms (node, alarm_id, kind, source, raised_ts, received, updated,"
                " post_phase) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (node, alarm_id) DO UPDATE"
                " SET post_phase = excluded.post_phase, updated = excluded.updated",
                (node, doc["alarm_id"], doc["kind"], doc["source"], doc["ts"], msg.received,
                 msg.received, doc["phase"]))

    def _snapshot(self, cur: Cursor, node: str, event_id: str, msg: Message,
                  out: Outcome) -> None:
        if msg.payload[:3] != b"\xff\xd8\xff":
            raise Rejected("event snapshot is not a JPEG")
        self._node(cur, node, msg.received, out)
        cur.execute("INSERT INTO snapshots (event_id, node, jpeg, received) VALUES (?,?,?,?) "
                    "ON CONFLICT (event_id) DO NOTHING",
                    (event_id, node, msg.payload, msg.received))

    def _camera(self, cur: Cursor, node: str, camera: str, msg: Message,
                out: Outcome) -> None:
        if msg.payload[:3] != b"\xff\xd8\xff":
            raise Rejected("camera snapshot is not a JPEG")
        self._node(cur, node, msg.received, out)
        cur.execute("INSERT INTO camera_snapshots (node, camera, jpeg, received) VALUES (?,?,?,?)"
                    " ON CONFLICT (node, camera) DO UPDATE SET jpeg = excluded.jpeg,"
                    " received = excluded.received", (node, camera, msg.payload, msg.received))

    def _status(self, cur: Cursor, node: str, msg: Message, out: Outcome) -> None:
        state = msg.payload.decode("ascii", "replace").strip()
        if state not in ("online", "offline"):
            raise Rejected(f"status must be online or offline, got {state[:40]!r}")
        self._node(cur, node, msg.received, out)
        # A retained copy heard on (re)subscribing says nothing about *when*: keep the older
        # time of a state we already know, so "offline for N minutes" stays true.
        cur.execute("UPDATE nodes SET status = ?, status_ts = CASE WHEN status = ? AND ?"
                    " THEN status_ts ELSE ? END, last_seen = ? WHERE id = ?",
                    (state, state, msg.retain, msg.received, msg.received, node))

    def _health(self, cur: Cursor, node: str, doc: dict[str, Any], msg: Message,
                out: Outcome) -> None:
        self._node(cur, node, msg.received, out)
        storage = doc.get("storage") or {}
        disk = storage.get("used_percent") if isinstance(storage, dict) else None
        cur.execute(
            "INSERT INTO health (node, ts, received, temperature_c, disk_percent, undervoltage,"
            " uptime_s, cpu_percent) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (node, ts) DO NOTHING",
            (node, doc["ts"], msg.received, doc.get("temperature_c"),
             disk if isinstance(disk, (int, float)) else None,
             None if doc.get("undervoltage") is None else int(bool(doc["undervoltage"])),
             doc.get("uptime_s"), doc.get("cpu_percent")))
        location = doc.get("location")
        lat, lon = (location if isinstance(location, list) and len(location) == 2
                    else (None, None))
        cur.execute(
            "UPDATE nodes SET health = ?, health_ts = ?, health_received = ?,"
            " health_problems = ?, last_seen = ?,"
            " name = CASE WHEN ? <> '' THEN ? ELSE name END,"
            " lat = CASE WHEN ? IS NOT NULL THEN ? ELSE lat END,"
            " lon = CASE WHEN ? IS NOT NULL THEN ? ELSE lon END"
            " WHERE id = ? AND (health_ts IS NULL OR health_ts <= ?)",
            (json.dumps(doc, separators=(",", ":")), doc["ts"], msg.received,
             json.dumps(health_problems(doc, doc["ts"], msg.received)), msg.received,
             doc.get("name") or "", doc.get("name") or "", lat, lat, lon, lon, node, doc["ts"]))

    def _output(self, cur: Cursor, node: str, doc: dict[str, Any], msg: Message,
                out: Outcome) -> None:
        self._node(cur, node, msg.received, out)
        cur.execute("INSERT INTO outputs (node, name, state, cause, ts, until) VALUES (?,?,?,?,?,?)"
                    " ON CONFLICT (node, name) DO UPDATE SET state = excluded.state,"
                    " cause = excluded.cause, ts = excluded.ts, until = excluded.until"
                    " WHERE outputs.ts IS NULL OR outputs.ts <= excluded.ts",
                    (node, doc["name"], doc["state"], doc["cause"], doc["ts"], doc["until"]))

    def _reply(self, cur: Cursor, node: str, doc: dict[str, Any], msg: Message,
               out: Outcome) -> None:
        self._node(cur, node, msg.received, out)
        cur.execute("INSERT INTO replies (node, cmd_id, action, ok, message, data, ts, received)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (node, doc["id"], doc["action"], int(doc["ok"]), doc["message"],
                     json.dumps(doc["data"]), doc["ts"], msg.received))
