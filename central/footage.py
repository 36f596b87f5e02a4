"""Footage on request: the console asks a node for a range of a camera and receives it itself.

An operator picks a camera and a time range on the node page. The console makes a one-time
upload URL on itself (`/footage/upload/<id>.mp4?token=<token>`, 32 random bytes; only the
token's SHA-256 is stored; in the query, because the node leaves the query out of the
`upload` events it publishes, so the token is never on the broker but in the command),
signs a `fetch` whose `upload_url` is that URL (docs/uplink.md) and records the request.
The node exports the range and PUTs the MP4 there; the console stores it under
`[footage] dir`, refuses a body larger than `max_mb` (413) or one that is not an MP4 (415),
and takes each token once (a second PUT after a complete one is 409). Progress comes from
the node's `upload` events, which the ingest stores like every event.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

from central.auth import audit
from central.commands import Commander
from central.db import Database
from central.settings import FootageSettings

UPLOAD_PATH = "/footage/upload/"
MP4_BRANDS = (b"ftyp", b"styp", b"moov", b"free", b"mdat", b"wide", b"skip")


class UploadRefused(Exception):
    """A PUT the console does not take; `status` is the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Footage:
    """Requests, uploads and the files of footage asked for from the console."""

    def __init__(self, db: Database, settings: FootageSettings,
                 commander: Commander | None) -> None:
        self.db = db
        self.settings = settings
        self.commander = commander
        self.max_bytes = int(settings.max_mb * 1024 * 1024)

    def path(self, footage_id: str) -> Path:
        return self.settings.dir / f"{footage_id}.mp4"

    # -- request ----------------------------------------------------------------------------
    def request(self, user: str, node: str, body: dict[str, Any], base_url: str) -> dict:
        """Sign and send a `fetch` for `body` = {camera, start, end}; the node's answer."""
        camera = body.get("camera")
        start, end = body.get("start"), body.get("end")
        if not isinstance(camera, str) or not camera:
            raise ValueError("pick a camera")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (start, end)):
            raise ValueError("start and end must be times (unix seconds)")
        if end <= start:
            raise ValueError("the end must be after the start")
        if self.commander is None or self.commander.key is None:
            raise ValueError("commands are not configured ([commands] key_file)")
        token = secrets.token_urlsafe(32)
        footage_id = uuid.uuid4().hex
        now = time.time()
        base = (self.settings.public_url or base_url).rstrip("/")
        url = f"{base}{UPLOAD_PATH}{footage_id}.mp4?token={token}"
        with self.db.tx() as cur:
            cur.execute("INSERT INTO footage (id, token, node, camera, start_ts, end_ts, author,"
                        " requested, expires, state) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (footage_id, _digest(token), node, camera, float(start), float(end),
                         user, now, now + self.settings.token_hours * 3600, "requested"))
        audit(self.db, user, "footage.request", f"{node}/{camera}",
              {"footage": footage_id, "start": start, "end": end}, "requested")
        result = self.commander.send(user, node, "fetch", {
            "camera": camera, "start": float(start), "end": float(end), "upload_url": url})
        state = "accepted" if result.get("ok") else "refused"
        with self.db.tx() as cur:
            cur.execute("UPDATE footage SET cmd_id = ?, state = ?, message = ? WHERE id = ?",
                        (result.get("id"), state, result.get("message"), footage_id))
        return {**result, "footage": footage_id}

    # -- upload -----------------------------------------------------------------------------
    def upload_target(self, token: str, length: int | None,
                      footage_id: str | None = None) -> dict[str, Any]:
        """The request a PUT with `token` (for `footage_id`) is for, or UploadRefused."""
        row = self.db.one("SELECT id, node, camera, state, expires FROM footage WHERE token = ?",
                          (_digest(token),))
        if row is None or row["expires"] < time.time() or footage_id not in (None, row["id"]):
            raise UploadRefused(403, "unknown or expired upload URL")
        if row["state"] == "uploaded":
            raise UploadRefused(409, "this upload URL has been used")
        if length is None:
            raise UploadRefused(411, "Content-Length required")
        if length > self.max_bytes:
            raise UploadRefused(413, f"{length} bytes is over the limit of {self.max_bytes}")
        return row

    def part_path(self, footage_id: str) -> Path:
        self.settings.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        return self.settings.dir / f".{footage_id}.{secrets.token_hex(4)}.part"

    def check_head(self, head: bytes) -> None:
        if len(head) >= 8 and head[4:8] not in MP4_BRANDS:
            raise UploadRefused(415, "not an MP4 file")

    def complete(self, row: dict[str, Any], part: Path, size: int) -> None:
        """The whole body is on disk: keep it, mark the request, audit."""
        with part.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(part, self.path(row["id"]))
        with self.db.tx() as cur:
            cur.execute("UPDATE footage SET state = 'uploaded', bytes = ?, uploaded = ?"
                        " WHERE id = ?", (size, time.time(), row["id"]))
        audit(self.db, f"node:{row['node']}", "footage.uploaded", f"{row['node']}/{row['camera']}",
              {"footage": row["id"], "bytes": size}, "ok")

    # -- read -------------------------------------------------------------------------------
    def listing(self, node: str, limit: int = 20) -> list[dict[str, Any]]:
        """The node's latest requests with their progress from the node's `upload` events."""
        rows = self.db.query("SELECT id, camera, start_ts, end_ts, author, requested, cmd_id,"
                             " state, message, bytes, uploaded FROM footage WHERE node = ?"
                             " ORDER BY requested DESC LIMIT ?", (node, limit))
        if not rows:
            return []
        since = min(r["requested"] for r in rows) - 60
        progress: dict[str, dict[str, Any]] = {}
        for ev in self.db.query("SELECT doc FROM events WHERE node = ? AND type = 'upload'"
                                " AND ts >= ? ORDER BY ts, seq", (node, since)):
            doc = json.loads(ev["doc"])
            progress[doc.get("job")] = {"phase": doc.get("phase"),
                                        "detail": doc.get("detail") or {}}
        for r in rows:
            r["progress"] = progress.get(r.pop("cmd_id"))
        return rows

    def file_of(self, footage_id: str) -> tuple[dict[str, Any], Path]:
        row = self.db.one("SELECT id, node, camera, start_ts, state FROM footage WHERE id = ?",
                          (footage_id,))
        if row is None or row["state"] != "uploaded" or not self.path(footage_id).is_file():
            raise LookupError("no such footage")
        return row, self.path(footage_id)
