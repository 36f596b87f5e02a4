"""Operator accounts (argon2id hashes), roles, sessions, and the append-only audit log.

Roles: `viewer` sees everything and changes nothing; `operator` also claims, acknowledges,
writes notes, dispatches and sends commands; `admin` also reads the audit log and the user
list. A user with an `agency` sees only that agency's read-only view. The audit table has
no UPDATE or DELETE path in the code, and database triggers refuse both
(`central.migrations`), so not even a bug in the interface can rewrite history.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from central.db import Database

ROLES = ("viewer", "operator", "admin")
RANK = {role: n for n, role in enumerate(ROLES)}
_HASHER = PasswordHasher()  # argon2id, the library's current recommended parameters


@dataclass(frozen=True)
class User:
    name: str
    role: str
    agency: str | None = None

    def can(self, role: str) -> bool:
        """At least `role` (and not an agency's read-only account)."""
        return self.agency is None and RANK[self.role] >= RANK[role]


def add_user(db: Database, name: str, password: str, role: str,
             agency: str | None = None) -> None:
    """Create or replace a user (the CLI's `user add`)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise ValueError("a password has at least 8 characters")
    with db.tx() as cur:
        cur.execute("INSERT INTO users (name, hash, role, agency, created) VALUES (?,?,?,?,?)"
                    " ON CONFLICT (name) DO UPDATE SET hash = excluded.hash,"
                    " role = excluded.role, agency = excluded.agency",
                    (name, _HASHER.hash(password), role, agency, time.time()))
    audit(db, "cli", "user.add", name, {"role": role, "agency": agency}, "ok")


def login(db: Database, name: str, password: str, hours: float) -> str | None:
    """A new session token, or None (wrong name or password; audited either way)."""
    row = db.one("SELECT hash FROM users WHERE name = ?", (name,))
    ok = False
    if row is not None:
        try:
            ok = _HASHER.verify(row["hash"], password)
        except (VerificationError, InvalidHashError):
            ok = False
    else:
        _HASHER.hash(password)  # same cost for unknown names: no user enumeration by timing
    if not ok:
        audit(db, name[:64], "login", None, None, "refused")
        return None
    token = secrets.token_urlsafe(32)
    with db.tx() as cur:
        cur.execute("INSERT INTO sessions (token, username, expires) VALUES (?,?,?)",
                    (_digest(token), name, time.time() + hours * 3600))
        cur.execute("DELETE FROM sessions WHERE expires < ?", (time.time(),))
    audit(db, name, "login", None, None, "ok")
    return token


def session_user(db: Database, token: str | None) -> User | None:
    if not token:
        return None
    row = db.one("SELECT u.name, u.role, u.agency FROM sessions s JOIN users u"
                 " ON u.name = s.username WHERE s.token = ? AND s.expires > ?",
                 (_digest(token), time.time()))
    return User(row["name"], row["role"], row["agency"]) if row else None


def logout(db: Database, token: str) -> None:
    with db.tx() as cur:
        cur.execute("DELETE FROM sessions WHERE token = ?", (_digest(token),))


def audit(db: Database, user: str, action: str, target: str | None,
          detail: dict[str, Any] | None, result: str) -> None:
    """Append one row: who, what, on what, when, with what result."""
    with db.tx() as cur:
        cur.execute("INSERT INTO audit (ts, username, action, target, detail, result)"
                    " VALUES (?,?,?,?,?,?)",
                    (time.time(), user, action, target,
                     json.dumps(detail, separators=(",", ":")) if detail else None, result))


def _digest(token: str) -> str:
    # only a hash of the token is stored: a copy of the database opens no session
    return hashlib.sha256(token.encode()).hexdigest()
