"""Ed25519 command signatures: key handling and the exact bytes that are signed.

The signed bytes of a command are::

    b"ronda-cmd-v1\\n" + JCS({"action", "args", "id", "node", "ts"})

where JCS is RFC 8785, the JSON Canonicalization Scheme (keys sorted by UTF-16 code
units, no whitespace, UTF-8, ECMAScript number form: `1e-7`, `60` for 60.0; computed by
the `rfc8785` library), so a Command Center in any language with a JCS library signs
the same bytes. `node` is the target node id (so a command for one node cannot be
replayed on another). `ts` is an integer (Unix seconds). The signature is sent as
standard base64 in the payload's `sig` field. Test vectors: docs/mqtt.md.

Example::

    private, public_b64 = generate_keypair()
    payload = sign_command(private, node="rw05", action="ping", args={}, cmd_id="c1")
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

DOMAIN = b"ronda-cmd-v1\n"


def canonical_json(value: Any) -> bytes:
    """The one byte form of a JSON value that signatures cover: RFC 8785 (JCS).

    Raises ValueError for what JCS cannot represent (NaN, integers beyond 2**53 - 1,
    non-text keys, lone surrogates).
    """
    try:
        return rfc8785.dumps(value)
    except UnicodeEncodeError as exc:  # a lone surrogate from json.loads("\\ud800")
        raise ValueError(f"not representable in JCS: {exc}") from None


def signed_bytes(node: str, cmd_id: str, ts: int, action: str, args: dict[str, Any]) -> bytes:
    """Exactly what is signed for a command."""
    return DOMAIN + canonical_json(
        {"action": action, "args": args, "id": cmd_id, "node": node, "ts": ts})


def key_id(public: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_b64(public: Ed25519PublicKey) -> str:
    """The raw 32-byte public key in base64: what goes into `mqtt.command_keys`."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_public_key(text: str) -> Ed25519PublicKey:
    """A public key from base64 of its 32 raw bytes (as in config) or PEM."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    raw = base64.b64decode(text, validate=True)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def generate_keypair() -> tuple[Ed25519PrivateKey, str]:
    """A new private key and the base64 public key to put in config."""
    private = Ed25519PrivateKey.generate()
    return private, public_key_b64(private.public_key())


def private_key_pem(private: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (keep the file mode 600)."""
    return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """A private key from PKCS#8 PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def sign_command(private: Ed25519PrivateKey, *, node: str, action: str,
                 args: dict[str, Any] | None = None, cmd_id: str | None = None,
                 ts: float | None = None) -> dict[str, Any]:
    """A complete command payload (dict; send it as JSON to `<root>/cmd/<action>`)."""
    args = dict(args or {})
    cmd_id = cmd_id or uuid.uuid4().hex
    its = int(time.time() if ts is None else ts)
    sig = private.sign(signed_bytes(node, cmd_id, its, action, args))
    return {"id": cmd_id, "ts": its, "action": action, "args": args,
            "key_id": key_id(private.public_key()), "sig": base64.b64encode(sig).decode()}
