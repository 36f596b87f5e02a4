"""`ronda keys generate` and `ronda keys show`: Ed25519 keys that sign remote commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from firmware.commands import formatter
from mqtt.signing import (
    generate_keypair,
    key_id,
    load_private_key,
    private_key_pem,
    public_key_b64,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "keys", formatter_class=formatter, help="make and inspect command-signing keys",
        description="Command Center operators sign every remote command (siren, light, arm...)\n"
                    "with an Ed25519 private key. Nodes accept a command only if its\n"
                    "signature verifies with one of the public keys in [mqtt] command_keys.\n\n"
                    "examples:\n"
                    "  ronda keys generate --private ~/.ronda/operator.pem\n"
                    "      writes the private key (mode 600) and prints the line to add to\n"
                    "      each node's ronda.toml:  command_keys = [\"<base64>\"]\n"
                    "  ronda keys show ~/.ronda/operator.pem")
    keys = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys.add_parser("generate", formatter_class=formatter,
                          help="create a private key file and print its public key",
                          description="Create a new Ed25519 key pair.\n\n"
                                      "example:\n  ronda keys generate --private operator.pem")
    gen.add_argument("--private", type=Path, default=Path("ronda-command-key.pem"),
                     help="where to write the private key (default: ./ronda-command-key.pem)")
    gen.add_argument("--force", action="store_true", help="overwrite an existing file")
    gen.set_defaults(func=generate)
    show = keys.add_parser("show", formatter_class=formatter,
                           help="print the public key and key id of a private key file",
                           description="example:\n  ronda keys show operator.pem")
    show.add_argument("private", type=Path, help="private key file (PEM)")
    show.set_defaults(func=show_key)


def generate(args: argparse.Namespace) -> int:
    path: Path = args.private
    if path.exists() and not args.force:
        print(f"{path} exists; use --force to replace it (the old key stops working)",
              file=sys.stderr)
        return 1
    private, public = generate_keypair()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_key_pem(private))
    os.chmod(path, 0o600)
    print(f"private key: {path} (keep it secret; mode 600)")
    print(f"key id:      {key_id(private.public_key())}")
    print("add to each node's ronda.toml, [mqtt] section:")
    print(f'command_keys = ["{public}"]')
    return 0


def show_key(args: argparse.Namespace) -> int:
    try:
        private = load_private_key(args.private.read_bytes())
    except (OSError, ValueError) as exc:
        print(f"{args.private}: {exc}", file=sys.stderr)
        return 1
    print(f"key id:     {key_id(private.public_key())}")
    print(f"public key: {public_key_b64(private.public_key())}")
    return 0
