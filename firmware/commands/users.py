"""`ronda users add|list|remove`: who may log in to the node's web page."""

from __future__ import annotations

import argparse
import getpass
import sys

from firmware.commands import formatter, load_config_or_exit

DEFAULT_CONFIG = "/etc/ronda/ronda.toml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "users", formatter_class=formatter, help="manage the web page's users",
        description="People log in to the node's web page with a name and a password.\n"
                    "There is no default user: add one before anyone can log in.\n"
                    "Roles: viewer (watch live and recordings, download), operator (also\n"
                    "acknowledge the alarm and test the siren), admin (also see the users).\n"
                    "Passwords are stored as argon2 hashes in <node.data_dir>/web-users.json.\n\n"
                    "examples:\n"
                    "  ronda users add sari --role operator        asks for the password twice\n"
                    "  ronda users add pak-rt --role viewer --generate\n"
                    "      makes a password and prints it once: write it down\n"
                    "  echo \"$PW\" | ronda users add budi --role admin --password-stdin\n"
                    "  ronda users list\n"
                    "  ronda users remove budi")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                        help=f"the node's config file (default: {DEFAULT_CONFIG})")
    actions = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    add = actions.add_parser("add", formatter_class=formatter, parents=[common],
                             help="add (or change) a user",
                             description="Add a user. Names: lower-case letters, digits, "
                                         ". _ -; passwords: at least 8 characters.")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    how = add.add_mutually_exclusive_group()
    how.add_argument("--generate", action="store_true",
                     help="make a password and print it once")
    how.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    add.add_argument("--replace", action="store_true",
                     help="change the role/password of an existing user")
    add.set_defaults(func=add_user)
    lst = actions.add_parser("list", parents=[common], help="list users and roles")
    lst.set_defaults(func=list_users)
    rm = actions.add_parser("remove", parents=[common], help="remove a user")
    rm.add_argument("name")
    rm.set_defaults(func=remove_user)


def _store(args: argparse.Namespace):
    config = load_config_or_exit(args.config)
    try:
        from web.users import FILENAME, UserStore
    except ImportError as exc:
        print(f"the web page is not installed ({exc.name} missing): "
              "pip install 'ronda[web]'", file=sys.stderr)
        raise SystemExit(1) from None
    return UserStore(config.node.data_dir / FILENAME)


def _password(args: argparse.Namespace) -> str | None:
    if args.generate:
        from web.users import generate_password

        return generate_password()
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        print("no terminal to ask for a password: use --generate or --password-stdin",
              file=sys.stderr)
        return None
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        print("the two passwords differ; nothing changed", file=sys.stderr)
        return None
    return first


def add_user(args: argparse.Namespace) -> int:
    from web.users import UserError

    store = _store(args)
    password = _password(args)
    if password is None:
        return 1
    try:
        user = store.add(args.name, args.role, password, replace=args.replace)
    except UserError as exc:
        print(f"not added: {exc}", file=sys.stderr)
        return 1
    print(f"user {user.name} ({user.role}) saved in {store.path}")
    if args.generate:
        print(f"password: {password}   (shown once: write it down)")
    return 0


def list_users(args: argparse.Namespace) -> int:
    users = _store(args).users()
    if not users:
        print("no users: nobody can log in (ronda users add NAME --role operator)")
    for user in users:
        print(f"{user.name:<32} {user.role}")
    return 0


def remove_user(args: argparse.Namespace) -> int:
    store = _store(args)
    if not store.remove(args.name):
        print(f"no user {args.name!r}", file=sys.stderr)
        return 1
    print(f"user {args.name} removed (logged-in sessions ended)")
    return 0
