"""The Starlette application: routes, the session gate, and the JSON the page reads.

Every request passes `Gate` first: without a valid session cookie only ``/login``
answers (pages redirect there, the API answers 401, a WebSocket is refused); a
state-changing request must also carry the session's CSRF token and come from this
page's origin. Roles: viewer < operator < admin (`web.users.ROLES`).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import math
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from web import i18n, recordings
from web.auth import COOKIE, Session, Sessions, Throttle, csrf_ok
from web.eventlog import EventLog
from web.live import LiveHub, queue_deliver
from web.node import Node
from web.settings import WebSettings
from web.users import UserStore

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
PUBLIC = {"/login"}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
       "style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin")]
MAX_BODY = 16 * 1024


class BadInput(HTTPException):
    def __init__(self, detail: str) -> None:
        super().__init__(400, detail)


def _same_origin(scope: Scope) -> bool:
    """The request's Origin (or Referer) names this host; requests without either (curl,
    old browsers) pass, since SameSite=Strict already keeps a browser's cookie off them."""
    headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
    origin = headers.get("origin") or headers.get("referer")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == headers.get("host", "")


class Gate:
    """ASGI middleware: sessions, CSRF, same origin, security headers."""

    def __init__(self, app: ASGIApp, sessions: Sessions, users: UserStore) -> None:
        self.app = app
        self.sessions = sessions
        self.users = users

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        cookies = _cookies(scope)
        session = self.sessions.get(cookies.get(COOKIE))
        if session is not None and session.user not in self.users.users():
            self.sessions.drop_user(session.user.name)  # removed, or its role changed
            session = None
        scope.setdefault("state", {})["session"] = session
        if scope["type"] == "websocket":
            if session is None or not _same_origin(scope):
                await send({"type": "websocket.close", "code": 4401})
                return
            await self.app(scope, receive, send)
            return

        async def send_secured(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        method = scope["method"]
        if path not in PUBLIC:
            if session is None:
                if path.startswith("/api/") or method != "GET":
                    response: Response = JSONResponse({"error": "log in first"}, 401)
                else:
                    response = RedirectResponse("/login", 303)
                await response(scope, receive, send_secured)
                return
            if method in UNSAFE:
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                if not _same_origin(scope) or not csrf_ok(session, headers.get("x-csrf-token")):
                    await JSONResponse({"error": "missing or wrong CSRF token"}, 403)(
                        scope, receive, send_secured)
                    return
        elif method in UNSAFE and not _same_origin(scope):
            await PlainTextResponse("cross-site request refused", 403)(
                scope, receive, send_secured)
            return
        await self.app(scope, receive, send_secured)


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, _, val = part.strip().partition("=")
                out.setdefault(name, val)
    return out


# ---- input checks -------------------------------------------------------------------
def _number(request: Request, name: str, default: float | None = None) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        if default is None:
            raise BadInput(f"{name} is required")
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadInput(f"{name} must be a number (got {raw[:20]!r})") from None
    if not math.isfinite(value):
        raise BadInput(f"{name} must be a finite number")
    return value


def _time(request: Request, name: str, default: float | None = None) -> float:
    value = _number(request, name, default)
    if value < 0 or value > time.time() + 86400:
        raise BadInput(f"{name} must be a time between 1970 and tomorrow (epoch seconds)")
    return value


def _range(request: Request, limit_s: float) -> tuple[float, float]:
    start, end = _time(request, "start"), _time(request, "end")
    if end <= start:
        raise BadInput("end must be after start")
    if end - start > limit_s:
        raise BadInput(f"range too long: at most {limit_s / 3600:g} h")
    return start, end


class Web:
    """The page's state and handlers; `app` is the ASGI application."""

    def __init__(self, node: Node, settings: WebSettings, users: UserStore,
                 events: EventLog, *, secure_cookies: bool, workdir: Path | None = None) -> None:
        self.node = node
        self.settings = settings
        self.users = users
        self.events = events
        self.secure_cookies = secure_cookies
        self.sessions = Sessions(settings.session_hours * 3600)
        self.throttle = Throttle()
        self.live = LiveHub(node.live_input, settings.max_viewers)
        self.exports = (recordings.Exports(node.recordings, workdir)
                        if node.recordings is not None else None)
        self._snapshots: dict[str, tuple[float, bytes | None]] = {}
        self._css = (STATIC / "app.css").read_text(encoding="utf-8")
        routes = [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", self.index, methods=["GET"]),
            Route("/api/me", self.me),
            Route("/api/overview", self.overview),
            Route("/api/overview/stream", self.overview_stream),
            Route("/api/cameras/{camera}/snapshot.jpg", self.snapshot),
            WebSocketRoute("/api/cameras/{camera}/live", self.live_ws),
            Route("/api/cameras/{camera}/timeline", self.timeline),
            Route("/api/cameras/{camera}/play", self.play),
            Route("/api/cameras/{camera}/frame.jpg", self.frame),
            Route("/api/exports", self.export_start, methods=["POST"]),
            Route("/api/exports/{job}", self.export_state),
            Route("/api/exports/{job}/file", self.export_file),
            Route("/api/events", self.event_list),
            Route("/api/events/{event_id}/snapshot.jpg", self.event_snapshot),
            Route("/api/alarm/ack", self.alarm_ack, methods=["POST"]),
            Route("/api/alarm/test", self.alarm_test, methods=["POST"]),
            Route("/api/users", self.user_list),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        self.app = Starlette(
            routes=routes, middleware=[Middleware(Gate, sessions=self.sessions, users=users)],
            exception_handlers={HTTPException: self._http_error,
                                recordings.Unavailable: self._unavailable,
                                Exception: self._crash})

    def close(self) -> None:
        self.live.close()
        if self.exports is not None:
            self.exports.close()

    # ---- errors: always a clear sentence, never a traceback ---------------------------
    @staticmethod
    async def _http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, exc.status_code)

    @staticmethod
    async def _unavailable(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc), "storage": "unavailable"}, 503)

    @staticmethod
    async def _crash(request: Request, exc: Exception) -> Response:
        log.error("web: %s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"error": "the node could not answer this request; it is logged"},
                            500)

    # ---- helpers ------------------------------------------------------------------------
    @staticmethod
    def session(request: Request | WebSocket) -> Session:
        session = request.scope["state"]["session"]
        assert session is not None  # the gate let it through
        return session

    def require(self, request: Request, role: str) -> Session:
        session = self.session(request)
        if not session.user.can(role):
            raise HTTPException(403, f"this needs the {role} role")
        return session

    def camera(self, request: Request | WebSocket) -> str:
        name = request.path_params["camera"]
        if name not in self.node.cameras():
            raise HTTPException(404, "no such camera")
        return name

    def store(self) -> Path:
        if self.node.recordings is None:
            raise recordings.Unavailable("this node does not record")
        return self.node.recordings

    @staticmethod
    def lang(request: Request) -> str:
        return i18n.pick(request.headers.get("accept-language"))

    # ---- login --------------------------------------------------------------------------
    def _login_html(self, lang: str, message: str = "") -> str:
        t = lambda key, **v: html.escape(i18n.text(lang, key, **v))  # noqa: E731
        note = f'<p class="msg" role="alert">{html.escape(message)}</p>' if message else ""
        if not self.users.users():
            note += f'<p class="msg">{t("no_users")}</p>'
        return f"""<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{t("title")} - {html.escape(self.node.name)}</title><style>{self._css}</style></head>
<body class="login"><main><h1>{t("title")}</h1><p>{html.escape(self.node.name)}</p>{note}
<form method="post" action="/login">
<label>{t("user")}<input name="name" autocomplete="username" required autocapitalize="none"></label>
<label>{t("password")}<input name="password" type="password" autocomplete="current-password"
 required></label><button type="submit">{t("login")}</button></form></main></body></html>"""

    async def login_page(self, request: Request) -> Response:
        return HTMLResponse(self._login_html(self.lang(request)))

    async def login(self, request: Request) -> Response:
        lang = self.lang(request)
        address = request.client.host if request.client else "?"
        wait = self.throttle.wait_s(address)
        if wait > 0:
            return HTMLResponse(self._login_html(lang, i18n.text(lang, "throttled",
                                                                 s=math.ceil(wait))),
                                429, headers={"Retry-After": str(math.ceil(wait))})
        body = await request.body()
        if len(body) > MAX_BODY:
            raise BadInput("request too large")
        form = parse_qs(body.decode("utf-8", "replace"))
        name = (form.get("name") or [""])[0].strip().lower()
        password = (form.get("password") or [""])[0]
        user = await run_in_threadpool(self.users.verify, name, password)
        if user is None:
            self.throttle.failed(address)
            log.warning("web: failed login for %r from %s", name[:32], address)
            return HTMLResponse(self._login_html(lang, i18n.text(lang, "bad_login")), 401)
        self.throttle.succeeded(address)
        token, _ = self.sessions.create(user)
        log.info("web: %s (%s) logged in from %s", user.name, user.role, address)
        response = RedirectResponse("/", 303)
        response.set_cookie(COOKIE, token, max_age=int(self.settings.session_hours * 3600),
                            httponly=True, samesite="strict", secure=self.secure_cookies)
        return response

    async def logout(self, request: Request) -> Response:
        self.sessions.drop(request.cookies.get(COOKIE))
        response = JSONResponse({"ok": True})
        response.delete_cookie(COOKIE, httponly=True, samesite="strict",
                               secure=self.secure_cookies)
        return response

    async def index(self, request: Request) -> Response:
        page = (STATIC / "index.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace('lang="en"', f'lang="{self.lang(request)}"', 1),
                            headers={"Cache-Control": "no-store"})

    async def me(self, request: Request) -> Response:
        session = self.session(request)
        lang = self.lang(request)
        return JSONResponse({"user": session.user.name, "role": session.user.role,
                             "csrf": session.csrf, "lang": lang, "node": self.node.name,
                             "strings": i18n.STRINGS[lang], "cameras": self.node.cameras(),
                             "patterns": list(self.node.patterns),
                             "max_export_s": self.settings.max_export_s})

    # ---- overview -----------------------------------------------------------------------
    def overview_data(self) -> dict[str, Any]:
        health = self.node.health()
        comps = health.get("components", {})
        cams = comps.get("cameras", {}).get("cameras", {})
        rec = comps.get("recorder", {})
        alarm = comps.get("alarm", {})
        mqtt = comps.get("mqtt")
        system = comps.get("system", {})
        oldest: dict[str, float] = {}
        storage = {"state": rec.get("state", "off" if self.node.recordings is None else "?"),
                   "reason": rec.get("reason", "")}
        if self.node.recordings is not None:
            try:
                oldest = recordings.oldest(self.node.recordings)
            except recordings.Unavailable as exc:
                storage = {"state": "unavailable", "reason": str(exc)}
        now = time.time()
        cameras = []
        for name in self.node.cameras():
            info = cams.get(name, {})
            cameras.append({
                "name": name, "state": info.get("state", "unknown"),
                "reason": info.get("reason", ""), "codec": info.get("codec"),
                "days": round((now - oldest[name]) / 86400, 2) if name in oldest else 0,
            })
        outputs = {n: o.get("state", "off") if isinstance(o, dict) else o
                   for n, o in alarm.get("outputs", {}).items()}
        return {
            "ts": now, "node": self.node.name,
            "cameras": cameras,
            "alarm": {"state": alarm.get("state", "unknown"), "alarm": alarm.get("alarm"),
                      "outputs": outputs, "arm": alarm.get("arm")},
            "cc": None if mqtt is None else {"connected": bool(mqtt.get("connected")),
                                             "outbox": mqtt.get("outbox_depth", 0)},
            "health": {"temperature_c": system.get("temperature_c"),
                       "throttled": system.get("throttled"),
                       "uptime_s": health.get("uptime_s"),
                       "disk": {**storage, "used": rec.get("bytes_used"),
                                "quota": rec.get("quota"), "free": rec.get("free_bytes")},
                       "faults": health.get("faults") or {}},
            "viewers": self.live.viewers(),
        }

    async def overview(self, request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(self.overview_data))

    async def overview_stream(self, request: Request) -> Response:
        """Server-sent events: the overview every 2 s (and at once on connect)."""
        async def events():
            while True:
                data = await run_in_threadpool(self.overview_data)
                yield f"event: overview\ndata: {json.dumps(data, default=str)}\n\n"
                for _ in range(20):
                    if await request.is_disconnected():
                        return
                    await asyncio.sleep(0.1)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def snapshot(self, request: Request) -> Response:
        camera = self.camera(request)
        cached = self._snapshots.get(camera)
        if cached is None or time.monotonic() - cached[0] > 4.0:
            jpeg = await run_in_threadpool(self.node.snapshot, camera)
            cached = self._snapshots[camera] = (time.monotonic(), jpeg)
        if not cached[1]:
            raise HTTPException(503, "no picture from this camera now")
        return Response(cached[1], media_type="image/jpeg",
                        headers={"Cache-Control": "no-store"})

    # ---- live ---------------------------------------------------------------------------
    async def live_ws(self, ws: WebSocket) -> None:
        try:
            camera = self.camera(ws)
        except HTTPException:
            await ws.close(4404)
            return
        await ws.accept()
        queue: asyncio.Queue = asyncio.Queue(maxsize=60)
        dropped = [0]
        deliver = queue_deliver(asyncio.get_running_loop(), queue,
                                lambda: dropped.__setitem__(0, dropped[0] + 1))
        joined = self.live.join(camera, deliver)
        if joined is None:
            await ws.send_json({"type": "full"})
            await ws.close(1013)
            return
        relay, key = joined
        closed = asyncio.Event()

        async def watch_client() -> None:
            try:
                while True:
                    await ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                closed.set()

        watcher = asyncio.create_task(watch_client())
        try:
            while not closed.is_set():
                try:
                    item = await asyncio.wait_for(queue.get(), 1.0)
                except asyncio.TimeoutError:
                    continue
                if isinstance(item, bytes):
                    await ws.send_bytes(item)
                else:
                    await ws.send_json(item)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            relay.leave(key)
            watcher.cancel()

    # ---- recordings ---------------------------------------------------------------------
    async def timeline(self, request: Request) -> Response:
        camera = self.camera(request)
        start, end = _range(request, recordings.MAX_TIMELINE_S)
        root = self.store()

        def collect() -> dict[str, Any]:
            marks = [{"ts": e["ts"], "type": e["type"], "id": e["id"]}
                     for e in self.events.query(camera=camera, start=start, end=end, limit=500)]
            return {"camera": camera, "start": start, "end": end,
                    "spans": recordings.spans(root, camera, start, end),
                    "clips": recordings.clips(root, camera, start, end), "marks": marks}

        return JSONResponse(await run_in_threadpool(collect))

    async def play(self, request: Request) -> Response:
        camera = self.camera(request)
        at = _time(request, "t")
        root = self.store()
        try:
            stream = await run_in_threadpool(recordings.PlaybackStream, root, camera, at)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None

        async def body():
            try:
                while True:
                    chunk = await run_in_threadpool(stream.read)
                    if not chunk:
                        return
                    yield chunk
            finally:
                await run_in_threadpool(stream.close)

        return StreamingResponse(body(), media_type="video/mp4",
                                 headers={"X-Ronda-Start": f"{stream.start:.3f}",
                                          "Cache-Control": "no-store"})

    async def frame(self, request: Request) -> Response:
        camera = self.camera(request)
        at = _time(request, "t")
        jpeg = await run_in_threadpool(recordings.frame_jpeg, self.store(), camera, at)
        if jpeg is None:
            raise HTTPException(404, "no footage at that time")
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    async def export_start(self, request: Request) -> Response:
        self.store()
        body = await request.body()
        if len(body) > MAX_BODY:
            raise BadInput("request too large")
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise BadInput("send JSON: {camera, start, end}") from None
        if not isinstance(data, dict):
            raise BadInput("send JSON: {camera, start, end}")
        camera = data.get("camera")
        if camera not in self.node.cameras():
            raise HTTPException(404, "no such camera")
        try:
            start, end = float(data["start"]), float(data["end"])
        except (KeyError, TypeError, ValueError):
            raise BadInput("start and end must be epoch seconds") from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
            raise BadInput("end must be after start, both after 1970")
        if end - start > self.settings.max_export_s:
            raise BadInput(f"range too long: at most {self.settings.max_export_s / 3600:g} h")
        assert self.exports is not None
        try:
            job = await run_in_threadpool(self.exports.start, camera, start, end)
        except LookupError as exc:
            raise HTTPException(404, str(exc)) from None
        except RuntimeError as exc:
            raise HTTPException(409, str(exc)) from None
        return JSONResponse(self._job(job), 202)

    @staticmethod
    def _job(job: recordings.ExportJob) -> dict[str, Any]:
        return {"id": job.id, "state": job.state, "progress": round(job.progress, 3),
                "error": job.error, "name": job.path.name,
                "gaps": [[round(a, 1), round(b, 1)] for a, b in job.plan.gaps],
                "file": f"/api/exports/{job.id}/file" if job.state == "done" else None}

    def _get_job(self, request: Request) -> recordings.ExportJob:
        job = self.exports.get(request.path_params["job"]) if self.exports else None
        if job is None:
            raise HTTPException(404, "no such download (they are kept 10 minutes)")
        return job

    async def export_state(self, request: Request) -> Response:
        return JSONResponse(self._job(self._get_job(request)))

    async def export_file(self, request: Request) -> Response:
        job = self._get_job(request)
        if job.state != "done":
            raise HTTPException(409, "not ready yet")
        return FileResponse(job.path, media_type="video/mp4", filename=job.path.name)

    # ---- events -------------------------------------------------------------------------
    async def event_list(self, request: Request) -> Response:
        camera = request.query_params.get("camera") or None
        if camera is not None and camera not in self.node.cameras():
            raise HTTPException(404, "no such camera")
        kind = request.query_params.get("type") or None
        if kind is not None and (len(kind) > 32 or not kind.replace("_", "").isalnum()):
            raise BadInput("type must be an event type such as panic or object")
        start = _time(request, "start", 0.0)
        end = _time(request, "end", time.time() + 3600)
        limit = int(_number(request, "limit", 100))
        if limit < 1:
            raise BadInput("limit must be at least 1")
        items = await run_in_threadpool(lambda: self.events.query(
            camera=camera, kind=kind, start=start, end=end, limit=limit))
        types = await run_in_threadpool(self.events.types)
        return JSONResponse({"events": items, "types": types})

    async def event_snapshot(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        if len(event_id) > 64:
            raise BadInput("bad event id")
        jpeg = await run_in_threadpool(self.events.snapshot, event_id)
        if not jpeg:
            raise HTTPException(404, "this event has no snapshot")
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})

    # ---- alarm --------------------------------------------------------------------------
    async def alarm_ack(self, request: Request) -> Response:
        session = self.require(request, "operator")
        ok, message = await run_in_threadpool(self.node.command, "ack", {},
                                              session.user.name)
        return JSONResponse({"ok": ok, "message": message}, 200 if ok else 409)

    async def alarm_test(self, request: Request) -> Response:
        session = self.require(request, "operator")
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            raise BadInput("send JSON: {pattern, confirm: true}") from None
        if not isinstance(data, dict) or data.get("confirm") is not True:
            raise BadInput("a siren test must be confirmed (confirm: true)")
        pattern = data.get("pattern")
        if pattern not in self.node.patterns:
            raise BadInput(f"unknown rhythm; known: {', '.join(self.node.patterns)}")
        ok, message = await run_in_threadpool(
            self.node.command, "siren", {"state": "on", "pattern": pattern, "for_s": 5},
            session.user.name)
        log.info("web: %s tested the siren (%s): %s", session.user.name, pattern, message)
        return JSONResponse({"ok": ok, "message": message}, 200 if ok else 409)

    async def user_list(self, request: Request) -> Response:
        self.require(request, "admin")
        return JSONResponse({"users": [{"name": u.name, "role": u.role}
                                       for u in self.users.users()]})
