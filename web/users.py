"""The page's users: names, roles and argon2 password hashes in one JSON file.

There is no default user and no default password: until `ronda users add` has been run,
nobody can log in (the login page says so). The file is mode 0600 and written atomically.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from support.files import atomic_write

ROLES = ("viewer", "operator", "admin")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
MIN_PASSWORD = 8
FILENAME = "web-users.json"

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) defaults
# Verified against when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY = _hasher.hash(secrets.token_hex(16))


class UserError(ValueError):
    """A bad name, role or password; the message says what is expected."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    def can(self, role: str) -> bool:
        """Whether this user has `role` or a higher one."""
        return ROLES.index(self.role) >= ROLES.index(role)


def generate_password() -> str:
    """A password a person can type on a phone: 4 groups of 4 lower-case letters/digits."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(4))


class UserStore:
    """Users in `path` (re-read when the file changes, so `ronda users` acts at once)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cache: tuple[float, dict[str, dict[str, str]]] | None = None

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._cache is None or self._cache[0] != mtime:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self._cache = (mtime, dict(data.get("users", {})))
        return self._cache[1]

    def _save(self, users: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps({"users": users}, indent=1, sort_keys=True) + "\n",
                     mode=0o600)
        self._cache = None

    def users(self) -> list[User]:
        with self._lock:
            return [User(n, u["role"]) for n, u in sorted(self._load().items())]

    def add(self, name: str, role: str, password: str, *, replace: bool = False) -> User:
        """Add (or with `replace`, change) a user; raises UserError on bad input."""
        if not NAME.match(name):
            raise UserError(f"name {name!r}: use 1-32 lower-case letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise UserError(f"role {role!r}: use one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password too short: at least {MIN_PASSWORD} characters")
        with self._lock:
            users = dict(self._load())
            if name in users and not replace:
                raise UserError(f"user {name!r} exists (use --replace to change it)")
            users[name] = {"role": role, "hash": _hasher.hash(password)}
            self._save(users)
        return User(name, role)

    def remove(self, name: str) -> bool:
        with self._lock:
            users = dict(self._load())
            if users.pop(name, None) is None:
                return False
            self._save(users)
            return True

    def verify(self, name: str, password: str) -> User | None:
        """The user if the password is right, else None (slow on purpose: argon2)."""
        with self._lock:
            entry = self._load().get(name)
        try:
            _hasher.verify(entry["hash"] if entry else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        return User(name, entry["role"]) if entry else None
