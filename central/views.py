"""What the console shows, computed from the database: node states, the alarm queue,
a node's page, the maintenance list. Plain functions of (db, settings, now)."""

from __future__ import annotations

import json
import time
from typing import Any

from central.db import Database
from central.settings import CentralSettings

OPEN = ("new", "claimed")  # an alarm is open until an operator acknowledges it
CLOCK_SKEW_S = 120.0


def _health(row: dict[str, Any]) -> dict[str, Any]:
    try:
        doc = json.loads(row["health"]) if row.get("health") else {}
    except ValueError:
        doc = {}
    return doc if isinstance(doc, dict) else {}


def health_problems(health: dict[str, Any], health_ts: float | None,
                    received: float | None) -> list[str]:
    """What a health report itself says is wrong (computed once, when it arrives)."""
    found = []
    for name, cam in sorted((health.get("cameras") or {}).items()):
        if isinstance(cam, dict) and cam.get("state") not in ("online", "starting"):
            reason = cam.get("reason") or ""
            found.append(f"camera {name} {cam.get('state')}" + (f": {reason}" if reason else ""))
    storage = health.get("storage")
    if isinstance(storage, dict):
        if storage.get("state") == "degraded" or "disk" in str(storage.get("reason") or ""):
            found.append(f"disk: {storage.get('reason') or storage.get('state')}")
        elif storage.get("quota") and storage.get("free_bytes") is not None \
                and storage["free_bytes"] < 0.02 * storage["quota"]:
            found.append("disk almost full")
    if health.get("undervoltage"):
        found.append("undervoltage (power supply)")
    if health.get("clock_synced") is False:
        found.append("clock not synchronised")
    elif health and health_ts is not None and received is not None \
            and abs(health_ts - received) > CLOCK_SKEW_S:
        found.append("clock off by more than 2 min")
    if (health.get("outbox") or {}).get("drops"):
        found.append(f"{health['outbox']['drops']} events dropped from a full outbox")
    return found


def problems(row: dict[str, Any], settings: CentralSettings, now: float) -> list[str]:
    """Why a node needs a technician (empty when nothing is wrong)."""
    found = []
    web = settings.web
    if row["status"] == "offline" and now - (row["status_ts"] or now) > web.offline_after_s:
        minutes = (now - row["status_ts"]) / 60
        found.append(f"offline for {minutes:.0f} min")
    if row["last_seen"] is not None and now - row["last_seen"] > web.silent_after_s:
        found.append(f"silent for {(now - row['last_seen']) / 3600:.0f} h")
    if row.get("health_problems"):
        found += json.loads(row["health_problems"])
    if lost(row):
        found.append(f"{lost(row)} events lost (seq gaps)")
    return found


def node_state(row: dict[str, Any], settings: CentralSettings, now: float,
               alarmed: set[str]) -> str:
    """alarm, offline (for more than N minutes), degraded, online."""
    if row["id"] in alarmed:
        return "alarm"
    if row["status"] == "offline":
        age = now - (row["status_ts"] or now)
        return "offline" if age > settings.web.offline_after_s else "degraded"
    if problems(row, settings, now) or row["status"] != "online":
        return "degraded"
    return "online"


NODE_COLUMNS = ("n.id, n.name, n.lat, n.lon, n.status, n.status_ts, n.health_ts,"
                " n.health_received, n.health_problems, n.last_seen, n.events, n.duplicates,"
                " n.min_seq, n.max_seq")


def lost(row: dict[str, Any]) -> int:
    """Events missing from the node's `seq` range as heard (holes, not the future)."""
    if row["min_seq"] is None:
        return 0
    return max(0, row["max_seq"] - row["min_seq"] + 1 - row["events"])


def alarmed_nodes(db: Database) -> set[str]:
    return {r["node"] for r in db.query(
        "SELECT DISTINCT node FROM alarms WHERE state IN ('new', 'claimed')")}


def nodes(db: Database, settings: CentralSettings, now: float | None = None) -> list[dict]:
    """Every node for the map: id, name, position, state, lost events."""
    now = time.time() if now is None else now
    alarmed = alarmed_nodes(db)
    out = []
    for row in db.query(f"SELECT {NODE_COLUMNS} FROM nodes n ORDER BY n.id"):
        out.append({"id": row["id"], "name": row["name"] or row["id"], "lat": row["lat"],
                    "lon": row["lon"], "status": row["status"],
                    "state": node_state(row, settings, now, alarmed),
                    "last_seen": row["last_seen"], "lost": lost(row)})
    return out


def maintenance(db: Database, settings: CentralSettings, now: float | None = None) -> list[dict]:
    now = time.time() if now is None else now
    out = []
    for row in db.query(f"SELECT {NODE_COLUMNS} FROM nodes n ORDER BY n.id"):
        found = problems(row, settings, now)
        if found:
            out.append({"id": row["id"], "name": row["name"] or row["id"], "problems": found,
                        "last_seen": row["last_seen"]})
    return out


def alarms(db: Database, open_only: bool = True, kinds: list[str] | None = None,
           limit: int = 200) -> list[dict]:
    """The alarm queue, newest first, with notes, dispatches and the siren's state."""
    where = ["1=1"]
    params: list[Any] = []
    if open_only:
        where.append("a.state IN ('new', 'claimed')")
    if kinds is not None:
        where.append("a.kind IN (" + ",".join("?" * len(kinds)) + ")" if kinds else "1=0")
        params += kinds
    rows = db.query(
        "SELECT a.*, n.name AS node_name, n.lat, n.lon, o.state AS siren, o.cause AS siren_cause"
        " FROM alarms a LEFT JOIN nodes n ON n.id = a.node"
        " LEFT JOIN outputs o ON o.node = a.node AND o.name = 'siren'"
        f" WHERE {' AND '.join(where)} ORDER BY a.raised_ts DESC LIMIT {int(limit)}", params)
    if not rows:
        return []
    ids = [r["id"] for r in rows]
    marks = ",".join("?" * len(ids))
    notes: dict[int, list] = {}
    for n in db.query(f"SELECT alarm, author, ts, text FROM notes WHERE alarm IN ({marks})"
                      " ORDER BY id", ids):
        notes.setdefault(n["alarm"], []).append(n)
    sent: dict[int, list] = {}
    for d in db.query("SELECT alarm, agency, author, ts, attempts, delivered_ts, last_error"
                      f" FROM dispatches WHERE alarm IN ({marks}) ORDER BY id", ids):
        sent.setdefault(d["alarm"], []).append(d)
    replies: dict[int, dict] = {}
    for c in db.query("SELECT c.alarm, c.action, c.args, r.ok, r.message FROM commands c"
                      " LEFT JOIN replies r ON r.cmd_id = c.id"
                      f" WHERE c.alarm IN ({marks}) ORDER BY c.sent_ts", ids):
        replies[c["alarm"]] = c
    for r in rows:
        r["notes"] = notes.get(r["id"], [])
        r["dispatches"] = sent.get(r["id"], [])
        r["last_command"] = replies.get(r["id"])
        r["node_name"] = r["node_name"] or r["node"]
    return rows


def node_page(db: Database, settings: CentralSettings, node: str) -> dict | None:
    row = db.one(f"SELECT {NODE_COLUMNS}, n.health FROM nodes n WHERE n.id = ?", (node,))
    if row is None:
        return None
    now = time.time()
    health = _health(row)
    history = db.query("SELECT ts, temperature_c, disk_percent, undervoltage, uptime_s,"
                       " cpu_percent FROM health WHERE node = ? ORDER BY ts DESC LIMIT 500",
                       (node,))
    events = db.query("SELECT e.id, e.seq, e.type, e.kind, e.phase, e.camera, e.ts,"
                      " (SELECT count(*) FROM snapshots s WHERE s.event_id = e.id) AS snapshot"
                      " FROM events e WHERE e.node = ? ORDER BY e.ts DESC LIMIT 100", (node,))
    cameras = {r["camera"]: r["received"] for r in db.query(
        "SELECT camera, received FROM camera_snapshots WHERE node = ?", (node,))}
    cam_health = health.get("cameras") or {}
    return {
        "id": row["id"], "name": row["name"] or row["id"], "lat": row["lat"], "lon": row["lon"],
        "status": row["status"], "state": node_state(row, settings, now, alarmed_nodes(db)),
        "problems": problems(row, settings, now), "health": health,
        "history": list(reversed(history)), "events": events, "lost": lost(row),
        "duplicates": row["duplicates"], "received": row["events"],
        "cameras": [{"name": name, "state": (cam_health.get(name) or {}).get("state"),
                     "snapshot_ts": cameras.get(name)}
                    for name in sorted(set(cam_health) | set(cameras))],
        "outputs": db.query("SELECT name, state, cause, ts, until FROM outputs WHERE node = ?"
                            " ORDER BY name", (node,)),
    }
