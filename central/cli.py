"""`ronda-central`: the Command Center service (a separate command from the node's `ronda`).

Why its own command: it runs on a city server, not on a node; it installs with its own
extra (`pip install 'ronda[central]'`); and `central` never imports `firmware`, so the
node's CLI stays free of web and database dependencies.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path

from central.settings import EX_CONFIG, ConfigError, load

EPILOG = """\
examples:
  ronda-central migrate --config /etc/ronda-central/central.toml
  ronda-central user add budi --role operator          (asks for the password)
  ronda-central serve   --config central.toml          (ingest + console in one process)
  ronda-central ingest  --config central.toml --client-id ronda-central-ingest-2
  ronda-central web     --config central.toml          (console only; ingest runs elsewhere)
  ronda-central demo                                   (what `make demo-central` runs)

A small deployment runs `serve` with SQLite. A city runs PostgreSQL, one `web` and
several `ingest` workers with distinct --client-id (they share the events through an MQTT 5
shared subscription). See docs/central.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ronda-central", description="Ronda Central: the Command Center's ingest and "
        "operator console.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", "-c", type=Path,
                        help="central.toml (default /etc/ronda-central/central.toml if present)")
    parser.add_argument("--verbose", "-v", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check-config", help="validate the config: exit 0, or 78 naming bad fields")
    sub.add_parser("migrate", help="create or upgrade the database schema")
    ingest = sub.add_parser("ingest", help="one ingest worker (MQTT -> database)")
    ingest.add_argument("--client-id", help="this worker's MQTT client id (its session)")
    web = sub.add_parser("web", help="the operators' web console")
    web.add_argument("--port", type=int)
    serve = sub.add_parser("serve", help="ingest and console in one process")
    serve.add_argument("--port", type=int)
    user = sub.add_parser("user", help="operator accounts")
    usub = user.add_subparsers(dest="user_command", required=True)
    add = usub.add_parser("add", help="create or update a user (argon2id password hash)")
    add.add_argument("name")
    add.add_argument("--role", choices=("viewer", "operator", "admin"), default="operator")
    add.add_argument("--agency", help="an agency id: the user sees only its read-only view")
    add.add_argument("--password-file", type=Path, help="read the password from a file")
    usub.add_parser("list", help="list users")
    demo = sub.add_parser("demo", help="broker, console, two real nodes, simulated ones")
    demo.add_argument("--sim-nodes", type=int, default=300)
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--seconds", type=float, default=0, help="stop after (0: Ctrl-C)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "demo":
        from central.demo import run_demo

        return run_demo(args.sim_nodes, args.port, args.seconds)
    from central.service import default_config_path

    try:
        settings = load(args.config or default_config_path())
    except ConfigError as exc:
        print(f"bad config:\n{exc}", file=sys.stderr)
        return EX_CONFIG
    if args.command == "check-config":
        print("config ok")
        return 0
    from central.db import Database

    if args.command == "migrate":
        db = Database(settings.database.url).migrate()
        print(f"schema version {db.version()} ({db.dialect})")
        return 0
    if args.command == "user":
        return _user(args, Database(settings.database.url).migrate(), settings)
    from central import service

    try:
        if args.command == "ingest":
            return service.run_ingest(settings, args.client_id)
        return service.run_web(settings, with_ingest=args.command == "serve", port=args.port)
    except ValueError as exc:  # e.g. a command key readable by others
        print(f"error: {exc}", file=sys.stderr)
        return EX_CONFIG


def _user(args: argparse.Namespace, db, settings) -> int:
    from central.auth import add_user

    if args.user_command == "list":
        for row in db.query("SELECT name, role, agency FROM users ORDER BY name"):
            print(f"{row['name']:20} {row['role']:9} {row['agency'] or ''}")
        return 0
    if args.agency and settings.agency(args.agency) is None:
        print(f"unknown agency {args.agency!r}; configured: "
              + ", ".join(a.id for a in settings.agencies), file=sys.stderr)
        return 2
    if args.password_file:
        password = args.password_file.read_text(encoding="utf-8").splitlines()[0]
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        add_user(db, args.name, password, "viewer" if args.agency else args.role, args.agency)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.name} saved")
    return 0
