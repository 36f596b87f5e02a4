"""The operators' web console (Starlette): pages, JSON API, live updates over SSE.

Pages are one static HTML shell (`static/console.html`) with plain JavaScript, no CDN and
no build step: the console must work in a Command Center whose internet link is down. The
server renders no HTML from data, so what nodes publish cannot inject markup (the page
sets text, never innerHTML with data).

Security: a session cookie (HttpOnly, SameSite=Strict, Secure behind HTTPS); every state
change is a POST that must carry the `X-Ronda: 1` header, which a cross-site form cannot
send (CSRF). Roles are checked on the server for every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from central import views
from central.auth import User, audit, login, logout, session_user
from central.commands import Commander
from central.db import Database
from central.footage import UPLOAD_PATH, Footage, UploadRefused
from central.settings import CentralSettings
from central.throttle import LoginThrottle
from central.webhooks import WebhookSender

STATIC = Path(__file__).resolve().parent / "static"
COOKIE = "ronda_session"
NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
HLS_FILE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}\.(m3u8|ts|m4s|mp4|aac)$")
HLS_TYPES = {"m3u8": "application/vnd.apple.mpegurl", "ts": "video/mp2t",
             "m4s": "video/iso.segment", "mp4": "video/mp4", "aac": "audio/aac"}


class ChangeFeed:
    """Polls the alarm table's fingerprint and wakes every SSE listener on a change.

    Polling the database (not an in-process signal) works whether the ingest runs in this
    process or in other workers on other machines.
    """

    def __init__(self, db: Database, interval_s: float = 0.2) -> None:
        self.db = db
        self.interval_s = interval_s
        self.listeners: set[asyncio.Queue[str]] = set()
        self.last: Any = None
        self.task: asyncio.Task | None = None
        self.wake = asyncio.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    def poke(self) -> None:
        """Look now (thread-safe): an ingest in this process stored an alarm change."""
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.wake.set)

    def fingerprint(self) -> Any:
        row = self.db.one("SELECT count(*) AS n, max(updated) AS u FROM alarms")
        return (row["n"], row["u"]) if row else None

    def snapshot(self) -> tuple[Any, str | None]:
        """The fingerprint and, when it changed, the open queue as JSON (once for all)."""
        now = self.fingerprint()
        if now == self.last:
            return now, None
        return now, json.dumps(views.alarms(self.db), separators=(",", ":"))

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        while True:
            try:
                now, queue = await run_in_threadpool(self.snapshot)
            except Exception:  # database away for a moment: keep the listeners
                now, queue = self.last, None
            if queue is not None:
                self.last = now
                message = f"event: alarms\ndata: {queue}\n\n"
                for q in list(self.listeners):
                    q.put_nowait(message)
            self.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.interval_s)


def create_app(db: Database, settings: CentralSettings, commander: Commander | None = None,
               webhooks: WebhookSender | None = None,
               feed: ChangeFeed | None = None) -> Starlette:
    """The console app over `db` (migrated), sending commands through `commander`."""
    feed = feed or ChangeFeed(db)
    footage = Footage(db, settings.footage, commander)
    throttle = LoginThrottle(settings.web.login_failures, settings.web.login_window_s)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        feed.task = asyncio.create_task(feed.run())
        yield
        feed.task.cancel()

    def user_of(request: Request) -> User | None:
        return session_user(db, request.cookies.get(COOKIE))

    def api(role: str | None = "viewer", post: bool = False) -> Callable:
        """Decorator: a JSON endpoint that needs a session with `role` (None: agencies too)."""
        def wrap(fn: Callable) -> Callable:
            async def endpoint(request: Request) -> Response:
                user = await run_in_threadpool(user_of, request)
                if user is None:
                    return JSONResponse({"error": "not logged in"}, 401)
                if post and request.headers.get("x-ronda") != "1":
                    return JSONResponse({"error": "missing X-Ronda header"}, 403)
                if role is not None and not user.can(role):
                    return JSONResponse({"error": f"needs the {role} role"}, 403)
                try:
                    body = await request.json() if post and await request.body() else {}
                    if not isinstance(body, dict):
                        raise ValueError("the body must be a JSON object")
                    result = await run_in_threadpool(fn, request, user, body)
                except LookupError as exc:
                    return JSONResponse({"error": str(exc)}, 404)
                except ValueError as exc:
                    return JSONResponse({"error": str(exc)}, 400)
                return result if isinstance(result, Response) else JSONResponse(result)
            return endpoint
        return wrap

    # -- pages -----------------------------------------------------------------------------
    async def page(request: Request) -> Response:
        user = await run_in_threadpool(user_of, request)
        if user is None:
            return RedirectResponse("/login", 303)
        if user.agency and not request.url.path.startswith(f"/agency/{user.agency}"):
            return RedirectResponse(f"/agency/{user.agency}", 303)
        return FileResponse(STATIC / "console.html", headers={"Cache-Control": "no-store"})

    async def login_page(request: Request) -> Response:
        if request.method == "GET":
            return FileResponse(STATIC / "login.html")
        # a urlencoded form of two fields: parsed here rather than with python-multipart
        form = parse_qs((await request.body())[:4096].decode("utf-8", "replace"))
        address = request.client.host if request.client else "?"
        name = (form.get("username") or [""])[0]
        wait = throttle.retry_after(address)
        if wait > 0:
            return PlainTextResponse(
                f"Too many failed sign-ins from {address}: try again in {wait:.0f} s.\n",
                429, headers={"Retry-After": str(int(wait) + 1)})
        token = await run_in_threadpool(login, db, name, (form.get("password") or [""])[0],
                                        settings.web.session_hours)
        if token is None:
            throttle.failed(address)
            if throttle.retry_after(address) > 0:
                await run_in_threadpool(audit, db, name[:64], "login.throttled", address,
                                        {"failures": settings.web.login_failures},
                                        "refused for "
                                        f"{settings.web.login_window_s:.0f} s at most")
            return RedirectResponse("/login?failed=1", 303)
        throttle.succeeded(address)
        resp = RedirectResponse("/", 303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        secure=settings.web.secure_cookies,
                        max_age=int(settings.web.session_hours * 3600))
        return resp

    async def logout_page(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        if token:
            await run_in_threadpool(logout, db, token)
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE)
        return resp

    # -- read ------------------------------------------------------------------------------
    @api(role=None)
    def me(_r: Request, user: User, _b: dict) -> dict:
        return {"name": user.name, "role": user.role, "agency": user.agency,
                "tiles_url": settings.web.tiles_url,
                "tiles_attribution": settings.web.tiles_attribution,
                "agencies": [a.model_dump(include={"id", "name", "phone", "kinds"})
                             for a in settings.agencies],
                "commands": commander is not None and commander.key is not None,
                "live": {"ttl_s": settings.live.ttl_s} if settings.live.hls_url else None}

    @api()
    def get_nodes(_r: Request, _u: User, _b: dict) -> list:
        return views.nodes(db, settings)

    @api()
    def get_node(request: Request, _u: User, _b: dict) -> dict:
        page_ = views.node_page(db, settings, request.path_params["node"])
        if page_ is None:
            raise LookupError("no such node")
        return page_

    @api()
    def get_alarms(request: Request, _u: User, _b: dict) -> list:
        return views.alarms(db, open_only=request.query_params.get("all") != "1")

    @api()
    def get_maintenance(_r: Request, _u: User, _b: dict) -> list:
        return views.maintenance(db, settings)

    @api(role="admin")
    def get_audit(_r: Request, _u: User, _b: dict) -> list:
        return db.query("SELECT id, ts, username, action, target, detail, result FROM audit"
                        " ORDER BY id DESC LIMIT 500")

    @api(role=None)
    def agency_alarms(request: Request, user: User, _b: dict) -> dict:
        agency = settings.agency(request.path_params["agency"])
        if agency is None:
            raise LookupError("no such agency")
        if user.agency not in (None, agency.id):
            return JSONResponse({"error": "another agency's view"}, 403)
        return {"agency": agency.model_dump(include={"id", "name", "phone", "kinds"}),
                "alarms": views.alarms(db, open_only=False, kinds=agency.kinds, limit=100)}

    @api(role=None)
    def event_snapshot(request: Request, _u: User, _b: dict) -> Response:
        row = db.one("SELECT jpeg FROM snapshots WHERE event_id = ?",
                     (request.path_params["event"],))
        if row is None:
            raise LookupError("no snapshot")
        return Response(bytes(row["jpeg"]), media_type="image/jpeg")

    @api()
    def camera_snapshot(request: Request, _u: User, _b: dict) -> Response:
        row = db.one("SELECT jpeg FROM camera_snapshots WHERE node = ? AND camera = ?",
                     (request.path_params["node"], request.path_params["camera"]))
        if row is None:
            raise LookupError("no snapshot")
        return Response(bytes(row["jpeg"]), media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    # -- act -------------------------------------------------------------------------------
    def alarm_row(request: Request) -> dict:
        row = db.one("SELECT * FROM alarms WHERE id = ?", (int(request.path_params["alarm"]),))
        if row is None:
            raise LookupError("no such alarm")
        return row

    def set_alarm(alarm: dict, user: User, action: str, sets: str, params: tuple,
                  detail: dict | None = None) -> dict:
        with db.tx() as cur:
            cur.execute(f"UPDATE alarms SET {sets}, updated = ? WHERE id = ?",
                        (*params, time.time(), alarm["id"]))
        audit(db, user.name, f"alarm.{action}", f"{alarm['node']}/{alarm['alarm_id']}",
              detail, "ok")
        return {"ok": True}

    @api(role="operator", post=True)
    def claim(request: Request, user: User, _b: dict) -> dict:
        alarm = alarm_row(request)
        if alarm["state"] == "acked":
            raise ValueError("already acknowledged")
        return set_alarm(alarm, user, "claim", "state = 'claimed', claimed_by = ?", (user.name,))

    @api(role="operator", post=True)
    def ack(request: Request, user: User, _b: dict) -> dict:
        alarm = alarm_row(request)
        return set_alarm(alarm, user, "ack", "state = 'acked', acked_by = ?, acked_ts = ?,"
                         " claimed_by = COALESCE(claimed_by, ?)",
                         (user.name, time.time(), user.name))

    @api(role="operator", post=True)
    def note(request: Request, user: User, body: dict) -> dict:
        alarm = alarm_row(request)
        text = str(body.get("text", "")).strip()
        if not text or len(text) > 2000:
            raise ValueError("a note has 1 to 2000 characters")
        with db.tx() as cur:
            cur.execute("INSERT INTO notes (alarm, author, ts, text) VALUES (?,?,?,?)",
                        (alarm["id"], user.name, time.time(), text))
        return set_alarm(alarm, user, "note", "state = state", (), {"text": text})

    @api(role="operator", post=True)
    def dispatch(request: Request, user: User, body: dict) -> dict:
        alarm = alarm_row(request)
        agency = settings.agency(str(body.get("agency", "")))
        if agency is None:
            raise ValueError("unknown agency")
        node = db.one("SELECT name, lat, lon FROM nodes WHERE id = ?", (alarm["node"],)) or {}
        now = time.time()
        doc = {"v": 1, "type": "dispatch", "agency": agency.id, "alarm": {
            "node": alarm["node"], "post": node.get("name") or alarm["node"],
            "location": ([node["lat"], node["lon"]] if node.get("lat") is not None else None),
            "alarm_id": alarm["alarm_id"], "kind": alarm["kind"], "source": alarm["source"],
            "raised_ts": alarm["raised_ts"]}, "operator": user.name, "ts": now,
            "note": str(body.get("note", ""))[:2000]}
        with db.tx() as cur:
            cur.execute("INSERT INTO dispatches (alarm, agency, author, ts, body, next_try,"
                        " last_error) VALUES (?,?,?,?,?,?,?)",
                        (alarm["id"], agency.id, user.name, now,
                         json.dumps(doc, separators=(",", ":")),
                         now if agency.webhook_url else None,
                         None if agency.webhook_url else "no webhook: call " + agency.phone))
        if webhooks is not None:
            webhooks.wake()
        return {**set_alarm(alarm, user, "dispatch", "state = state", (),
                            {"agency": agency.id}), "phone": agency.phone}

    @api(role="operator", post=True)
    def silence(request: Request, user: User, _b: dict) -> dict:
        alarm = alarm_row(request)
        if commander is None:
            raise ValueError("commands are not configured")
        result = commander.send(user.name, alarm["node"], "siren", {"state": "off"},
                                alarm=alarm["id"])
        with db.tx() as cur:  # touch the alarm so every console shows the reply
            cur.execute("UPDATE alarms SET updated = ? WHERE id = ?", (time.time(), alarm["id"]))
        return result

    # -- footage ---------------------------------------------------------------------------
    @api(role="operator", post=True)
    def request_footage(request: Request, user: User, body: dict) -> dict:
        node = request.path_params["node"]
        if db.one("SELECT id FROM nodes WHERE id = ?", (node,)) is None:
            raise LookupError("no such node")
        return footage.request(user.name, node, body, str(request.base_url))

    @api()
    def list_footage(request: Request, _u: User, _b: dict) -> list:
        return footage.listing(request.path_params["node"])

    @api()
    def footage_file(request: Request, user: User, _b: dict) -> Response:
        row, path = footage.file_of(request.path_params["footage"])
        start = time.strftime("%Y%m%d-%H%M%S", time.gmtime(row["start_ts"]))
        name = f"{row['node']}-{row['camera']}-{start}Z.mp4"
        download = request.query_params.get("download") == "1"
        if download or request.headers.get("range", "bytes=0-").startswith("bytes=0-"):
            audit(db, user.name, "footage.download" if download else "footage.view",
                  f"{row['node']}/{row['camera']}", {"footage": row["id"]}, "ok")
        return FileResponse(path, media_type="video/mp4", filename=name if download else None,
                            headers={"Cache-Control": "private, no-store"})

    async def upload(request: Request) -> Response:
        """The node's PUT of requested footage: authorised by the one-time token alone."""
        length = request.headers.get("content-length")
        part: Path | None = None
        try:
            row = await run_in_threadpool(footage.upload_target,
                                          request.query_params.get("token", ""),
                                          int(length) if length and length.isdigit() else None,
                                          request.path_params["footage"])
            part = footage.part_path(row["id"])
            size = 0
            with part.open("wb") as out:
                pending: list[bytes] = []  # written 1 MiB at a time: one thread hop each
                buffered = 0
                async for chunk in request.stream():
                    if size == 0 and chunk:
                        footage.check_head(chunk)
                    size += len(chunk)
                    if size > footage.max_bytes:
                        raise UploadRefused(413, "over the size limit")
                    pending.append(chunk)
                    buffered += len(chunk)
                    if buffered >= 1 << 20:
                        await run_in_threadpool(out.write, b"".join(pending))
                        pending, buffered = [], 0
                await run_in_threadpool(out.write, b"".join(pending))
            if size != int(length or 0):
                raise UploadRefused(400, f"got {size} of {length} bytes")
            await run_in_threadpool(footage.complete, row, part, size)
            part = None
            return PlainTextResponse("stored\n", 201)
        except UploadRefused as exc:
            return PlainTextResponse(f"{exc}\n", exc.status)
        except OSError as exc:  # [footage] dir not writable, disk full: the node retries later
            return PlainTextResponse(f"cannot store the upload: {exc.strerror or exc}\n", 503)
        finally:
            if part is not None:
                part.unlink(missing_ok=True)

    # -- live video ------------------------------------------------------------------------
    # who watches which camera from this console: a `live-stop` is sent only when the last
    # page watching it closes (in memory: a second console process keeps its own list)
    watchers: dict[tuple[str, str], dict[str, float]] = {}

    def live_args(body: dict) -> tuple[str, str]:
        camera, viewer = body.get("camera"), body.get("viewer")
        if not isinstance(camera, str) or not NAME.match(camera):
            raise ValueError("pick a camera")
        if not isinstance(viewer, str) or not NAME.match(viewer):
            raise ValueError("viewer: a page id")
        if not settings.live.hls_url:
            raise ValueError("live video is not configured ([live] hls_url)")
        if commander is None:
            raise ValueError("commands are not configured")
        return camera, viewer

    @api(role="operator", post=True)
    def live_start(request: Request, user: User, body: dict) -> dict:
        node = request.path_params["node"]
        camera, viewer = live_args(body)
        if db.one("SELECT id FROM nodes WHERE id = ?", (node,)) is None:
            raise LookupError("no such node")
        result = commander.send(user.name, node, "live", {  # type: ignore[union-attr]
            "camera": camera, "stream": settings.live.stream, "ttl_s": settings.live.ttl_s})
        if result.get("ok"):
            watchers.setdefault((node, camera), {})[viewer] = time.monotonic()
        playlist = f"/api/live/{node}/{camera}/index.m3u8"
        return {**result, "playlist": playlist, "renew_s": settings.live.ttl_s / 2}

    @api(role="operator", post=True)
    def live_stop(request: Request, user: User, body: dict) -> dict:
        node = request.path_params["node"]
        camera, viewer = live_args(body)
        pages = watchers.get((node, camera), {})
        pages.pop(viewer, None)
        fresh = time.monotonic() - settings.live.ttl_s
        others = [v for v, seen in pages.items() if seen > fresh]
        if others:
            return {"ok": True, "message": f"{camera} stays live: {len(others)} other page(s)"
                                           " of this console watch it"}
        watchers.pop((node, camera), None)
        return commander.send(user.name, node, "live-stop",  # type: ignore[union-attr]
                              {"camera": camera})

    @api()
    def live_file(request: Request, _u: User, _b: dict) -> Response:
        """The media server's HLS, relayed: only signed-in users see the cameras."""
        node, camera, name = (request.path_params[k] for k in ("node", "camera", "file"))
        if not settings.live.hls_url:
            raise LookupError("live video is not configured")
        if not (NAME.match(node) and NAME.match(camera) and HLS_FILE.match(name)):
            raise LookupError("no such file")
        playlist = settings.live.hls_url.replace("{node}", node).replace("{camera}", camera)
        url = playlist if name == "index.m3u8" else urljoin(playlist, name)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise LookupError("not live (yet)") from None
            return JSONResponse({"error": f"media server: {exc.code}"}, 502)
        except OSError as exc:
            return JSONResponse({"error": f"media server: {exc}"}, 502)
        return Response(data, media_type=HLS_TYPES[name.rsplit(".", 1)[1]],
                        headers={"Cache-Control": "no-store"})

    async def stream(request: Request) -> Response:
        user = await run_in_threadpool(user_of, request)
        if user is None:
            return PlainTextResponse("not logged in", 401)
        q: asyncio.Queue[str] = asyncio.Queue()
        feed.listeners.add(q)

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 1000\nevent: hello\ndata: {}\n\n"
                while True:
                    try:
                        yield (await asyncio.wait_for(q.get(), 15)).encode()
                    except asyncio.TimeoutError:
                        yield b": keepalive\n\n"
            finally:
                feed.listeners.discard(q)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", page), Route("/map", page), Route("/alarms", page),
        Route("/maintenance", page), Route("/audit", page), Route("/node/{node}", page),
        Route("/agency/{agency}", page),
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout_page, methods=["GET", "POST"]),
        Route("/api/me", me), Route("/api/nodes", get_nodes), Route("/api/nodes/{node}", get_node),
        Route("/api/nodes/{node}/cameras/{camera}.jpg", camera_snapshot),
        Route("/api/events/{event}/snapshot.jpg", event_snapshot),
        Route("/api/alarms", get_alarms), Route("/api/maintenance", get_maintenance),
        Route("/api/audit", get_audit), Route("/api/agency/{agency}", agency_alarms),
        Route("/api/alarms/{alarm:int}/claim", claim, methods=["POST"]),
        Route("/api/alarms/{alarm:int}/ack", ack, methods=["POST"]),
        Route("/api/alarms/{alarm:int}/note", note, methods=["POST"]),
        Route("/api/alarms/{alarm:int}/dispatch", dispatch, methods=["POST"]),
        Route("/api/alarms/{alarm:int}/silence", silence, methods=["POST"]),
        Route("/api/nodes/{node}/footage", list_footage),
        Route("/api/nodes/{node}/footage", request_footage, methods=["POST"]),
        Route("/api/footage/{footage}.mp4", footage_file),
        Route(UPLOAD_PATH + "{footage}.mp4", upload, methods=["PUT"]),
        Route("/api/nodes/{node}/live", live_start, methods=["POST"]),
        Route("/api/nodes/{node}/live-stop", live_stop, methods=["POST"]),
        Route("/api/live/{node}/{camera}/{file}", live_file),
        Route("/api/stream", stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.feed = feed
    return app
