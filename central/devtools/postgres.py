"""A real PostgreSQL (Debian's package) in a temp dir, on a free loopback port.

As root, `initdb` and `pg_ctl` refuse to run, so they run as the `postgres` user (Debian's
package creates it) or `nobody`; the data dir is theirs. Example::

    with LocalPostgres() as pg:
        db = Database(pg.url("test1"))
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    which = shutil.which(name)
    if which:
        return which
    raise FileNotFoundError(f"{name} not found: apt-get install postgresql")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalPostgres:
    """initdb + pg_ctl start in a temp dir; `url(dbname)` creates a database."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ronda-pg-"))
        self.data = self.dir / "data"
        self.user = None
        if os.geteuid() == 0:
            self.user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)

    def _run(self, args: list[str]) -> None:
        cmd = (["runuser", "-u", self.user, "--"] if self.user else []) + args
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {proc.stdout}{proc.stderr}")

    def start(self) -> LocalPostgres:
        os.chmod(self.dir, 0o755)
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run([_bin("initdb"), "-D", str(self.data), "-U", "ronda", "--auth=trust",
                   "-E", "UTF8", "--no-sync"])
        self._run([_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                   "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
                   " -c fsync=on -c max_connections=200", "start"])
        return self

    def url(self, dbname: str = "ronda") -> str:
        """A fresh database `dbname` (created if missing) as a psycopg URL."""
        import psycopg

        with psycopg.connect(f"postgresql://ronda@127.0.0.1:{self.port}/postgres",
                             autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (dbname,)).fetchone():
                conn.execute(f'CREATE DATABASE "{dbname}"')
        return f"postgresql://ronda@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if self.data.exists():
            with contextlib.suppress(RuntimeError):
                self._run([_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False

