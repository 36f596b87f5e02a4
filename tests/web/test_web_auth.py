"""Login, sessions, CSRF, roles and throttling against the real node over HTTPS; the
route walk: every route of the app except /login refuses a request without a session."""

from __future__ import annotations

import re
import socket
import ssl

from starlette.routing import Mount, Route, WebSocketRoute
from web_kit import INSECURE, Client, cli

from tests.waiting import all_of
from web.app import Web


def app_routes(node) -> list[tuple[str, str]]:
    """Walk the routes of a Web app built like the node's (same class, same table)."""
    import tempfile
    from pathlib import Path

    from web.eventlog import EventLog
    from web.node import Node
    from web.settings import WebSettings
    from web.users import UserStore

    tmp = Path(tempfile.mkdtemp())
    web = Web(Node("x", dict, list, lambda c: None, lambda c: None, lambda *a: (False, ""),
                   None), WebSettings(), UserStore(tmp / "u.json"), EventLog(tmp / "e.db"),
              secure_cookies=True)
    out = []
    for route in web.app.routes:
        path = re.sub(r"\{camera\}", "gang", route.path)
        path = re.sub(r"\{[a-z_]+\}", "abc", path)
        if isinstance(route, Mount):
            out.append(("GET", path + "/app.js"))
        elif isinstance(route, WebSocketRoute):
            out.append(("WS", path))
        elif isinstance(route, Route):
            out += [(m, path) for m in sorted(route.methods or ["GET"]) if m != "HEAD"]
    web.close()
    return out


def websocket_status(base: str, path: str, cookie: str = "") -> int:
    """The HTTP status of a WebSocket handshake (101 = accepted)."""
    host, port = base.split("//")[1].split(":")
    raw = socket.create_connection((host, int(port)), timeout=10)
    sock = INSECURE.wrap_socket(raw, server_hostname=host)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  f"Sec-WebSocket-Version: 13\r\nOrigin: {base}\r\n"
                  + (f"Cookie: {cookie}\r\n" if cookie else "") + "\r\n").encode())
    line = sock.recv(1024).split(b"\r\n")[0]
    sock.close()
    return int(line.split()[1])


def test_every_route_but_login_refuses_without_a_session(node) -> None:
    routes = app_routes(node)
    assert len(routes) >= 20, routes
    anonymous = Client(node.base)
    seen = []
    for method, path in routes:
        if path == "/login":
            continue
        if method == "WS":
            status = websocket_status(node.base, path)
            assert status == 403, (path, status)
        else:
            status, headers, body = anonymous.request(method, path, b"" if method == "POST"
                                                      else None)
            if method == "GET" and not path.startswith("/api/"):
                assert status == 303 and headers["location"] == "/login", (path, status)
            else:
                assert status == 401, (method, path, status, body[:100])
        seen.append(path)
    assert "/api/cameras/gang/live" in seen and "/static/app.js" in seen
    # the same walk with a session gets past the gate (no 401 anywhere)
    ops = node.client("ops")
    for method, path in routes:
        if method == "GET" and not any(w in path for w in ("export", "play", "stream")):
            status, _, _ = ops.request("GET", path)
            assert status != 401, path
    cookie = ops.cookie()
    assert websocket_status(node.base, "/api/cameras/gang/live",
                            f"{cookie.name}={cookie.value}") == 101


def test_login_sets_a_locked_down_cookie_and_logout_ends_it(node) -> None:
    client = Client(node.base)
    status, headers, _ = client.request("POST", "/login", b"name=ops&password=operator-kuat-2",
                                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303
    set_cookie = headers["set-cookie"].lower()
    for flag in ("httponly", "samesite=strict", "secure"):
        assert flag in set_cookie, set_cookie
    _, page_headers, _ = client.request("GET", "/")
    csp = page_headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp  # no CDN, no inline JS
    assert page_headers["x-frame-options"] == "DENY"
    me_status, me = client.json("GET", "/api/me")
    assert me_status == 200 and me["role"] == "operator" and me["csrf"]
    client.csrf = me["csrf"]
    assert client.json("POST", "/logout")[0] == 200
    assert client.json("GET", "/api/me")[0] == 401


def test_state_changes_need_the_csrf_token_and_the_same_origin(node) -> None:
    ops = node.client("ops")
    status, body = ops.json("POST", "/api/alarm/ack", {}, csrf=False)
    assert status == 403 and "CSRF" in body["error"]
    ops_wrong = node.client("ops")
    ops_wrong.csrf = "forged"
    assert ops_wrong.json("POST", "/api/alarm/ack", {})[0] == 403
    status, _ = ops.json("POST", "/api/alarm/ack", {}, headers={"Origin": "https://evil.example"})
    assert status == 403
    assert ops.json("POST", "/api/alarm/ack", {})[0] == 200  # with both: accepted
    # login from another site's form is refused too
    other = Client(node.base)
    status, _, _ = other.request("POST", "/login", b"name=ops&password=operator-kuat-2",
                                 {"Origin": "https://evil.example",
                                  "Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403


def test_roles_viewer_cannot_ack_or_sound_the_siren_admin_sees_users(node) -> None:
    vera = node.client("vera")
    status, body = vera.json("POST", "/api/alarm/test", {"pattern": "panic", "confirm": True})
    assert status == 403 and "operator" in body["error"]
    assert vera.json("POST", "/api/alarm/ack", {})[0] == 403
    assert vera.json("GET", "/api/users")[0] == 403
    status, body = node.client("adi").json("GET", "/api/users")
    assert status == 200 and {u["name"] for u in body["users"]} >= {"vera", "ops", "adi"}
    assert all_of(body["users"], lambda u: "hash" not in u, "users")


def _login_from(node, source: str, name: str, password: str) -> int:
    """POST /login from another loopback address (so the throttle hits only that one)."""
    import http.client
    import urllib.parse

    conn = http.client.HTTPSConnection("127.0.0.1", node.port, timeout=30, context=INSECURE,
                                       source_address=(source, 0))
    try:
        conn.request("POST", "/login", urllib.parse.urlencode(
            {"name": name, "password": password}), {
            "Content-Type": "application/x-www-form-urlencoded", "Origin": node.base})
        return conn.getresponse().status
    finally:
        conn.close()


def test_wrong_passwords_are_slowed_down_per_address(node) -> None:
    statuses = [_login_from(node, "127.0.0.2", "ops", "wrong-password") for _ in range(7)]
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:], statuses
    # even the right password waits now: the address is throttled, not the name...
    assert _login_from(node, "127.0.0.2", "ops", "operator-kuat-2") == 429
    # ...and only that address: the same user logs in from another phone
    assert _login_from(node, "127.0.0.3", "ops", "operator-kuat-2") == 303


def test_users_cli_add_list_remove_and_no_default_user(tmp_path, capsys) -> None:
    config = tmp_path / "ronda.toml"
    config.write_text(f'[node]\nid = "cli"\ndata_dir = "{tmp_path / "state"}"\n')
    c = ("--config", str(config))
    code, out, _ = cli(capsys, "users", "list", *c)
    assert code == 0 and "no users" in out
    code, out, err = cli(capsys, "users", "add", "sari", "--role", "operator", "--generate", *c)
    assert code == 0, err
    password = re.search(r"password: (\S+)", out).group(1)
    assert len(password) >= 16
    path = tmp_path / "state" / "web-users.json"
    assert "$argon2id$" in path.read_text() and password not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    code, _, err = cli(capsys, "users", "add", "sari", "--role", "viewer", "--generate", *c)
    assert code == 1 and "exists" in err
    code, _, err = cli(capsys, "users", "add", "../x", "--role", "viewer", "--generate", *c)
    assert code == 1 and "name" in err
    code, _, err = cli(capsys, "users", "add", "budi", "--role", "viewer", "--password-stdin",
                       *c, stdin="short\n")
    assert code == 1 and "too short" in err
    code, _, _ = cli(capsys, "users", "add", "budi", "--role", "boss", "--generate", *c)
    assert code == 2  # argparse: not a role
    assert "sari" in cli(capsys, "users", "list", *c)[1]
    assert cli(capsys, "users", "remove", "sari", *c)[0] == 0
    assert cli(capsys, "users", "remove", "sari", *c)[0] == 1
    assert cli(capsys, "users", "list", "--config", str(tmp_path / "nope.toml"))[0] == 78


def test_removing_a_user_ends_their_session_and_the_login_page_needs_no_session(
        node, capsys) -> None:
    client = Client(node.base)
    status, _, page = client.request("GET", "/login", headers={"Accept-Language": "id-ID,id"})
    assert status == 200 and b"Kata sandi" in page
    status, _, page = client.request("GET", "/login", headers={"Accept-Language": "en-GB"})
    assert b"Password" in page
    c = ("--config", str(node.config))
    assert cli(capsys, "users", "add", "tamu", "--role", "viewer", "--password-stdin", *c,
               stdin="tamu-sementara\n")[0] == 0
    guest = node.client()
    assert guest.login("tamu", "tamu-sementara") == 303
    assert guest.json("GET", "/api/me")[0] == 200
    assert cli(capsys, "users", "remove", "tamu", *c)[0] == 0
    assert guest.json("GET", "/api/me")[0] == 401


def test_plain_http_is_not_served_on_the_https_port(node) -> None:
    raw = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    raw.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        data = raw.recv(100)
    except (ConnectionResetError, ssl.SSLError):
        data = b""
    raw.close()
    assert b"200 OK" not in data
