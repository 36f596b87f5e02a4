"""The signed bytes are RFC 8785 (JCS): the documented test vectors, and a second,
independent implementation (a few lines of JavaScript run with node) whose signatures the
node accepts and whose canonical bytes equal ours on values where Python's `json.dumps`
differs (exponents, integral floats, non-ASCII text, UTF-16 key order)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mqtt.commands import CommandVerifier
from mqtt.signing import (
    canonical_json,
    private_key_pem,
    public_key_b64,
    sign_command,
    signed_bytes,
)

HERE = Path(__file__).resolve().parent
DOCS = HERE.parents[1] / "docs" / "mqtt.md"
# RFC 8032 section 7.1, test 1: a published key, so anyone can check the vectors.
RFC8032_SECRET = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
VECTORS = [  # (args of a siren command c1 for rw05 at ts 1795830000, signed JSON, sig)
    ({"state": "on", "for_s": 60.0},
     '{"action":"siren","args":{"for_s":60,"state":"on"},"id":"c1","node":"rw05",'
     '"ts":1795830000}',
     "TWX6Fst4n3L1OokOYyKK1AcSdeoS7MGu2tUDm7mJCbQfCN4js8xk4ibQVce0VV4cOs+pD08bQotZI8pBKtTbDw=="),
    ({"state": "on", "for_s": 1e-7, "pattern": "sirène\u2028€"},
     '{"action":"siren","args":{"for_s":1e-7,"pattern":"sirène\u2028€","state":"on"},'
     '"id":"c1","node":"rw05","ts":1795830000}',
     "6QRCBFrVGpvx4vqcoGStVaHZhB5s4qm5/erWU6LqQ9DZimZy5TO7F7R1AP50aIkmdqr5R+inqSUE3czgQJHvBg=="),
]
# Values where JCS and Python's json.dumps(sort_keys=True, ensure_ascii=True) differ.
TRICKY = [1e-7, 60.0, 1e21, 1e-6, 0.1 + 0.2, -0.0, 5e-324, 1.7976931348623157e308,
          2**53 - 1, "é€\u2028\x01\x7f\"\\/", {"\ue000": 1, "\U0001F600": 2, "b": 3, "B": 4},
          [True, None, {"z": [], "a": {}}]]


def _key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_SECRET))


@pytest.mark.parametrize(("args", "text", "sig"), VECTORS)
def test_documented_vectors(args: dict[str, Any], text: str, sig: str) -> None:
    message = signed_bytes("rw05", "c1", 1795830000, "siren", args)
    assert message == b"ronda-cmd-v1\n" + text.encode("utf-8")
    assert base64.b64encode(_key().sign(message)).decode() == sig
    assert public_key_b64(_key().public_key()) == RFC8032_PUBLIC
    docs = DOCS.read_text(encoding="utf-8")
    assert sig in docs and message.hex() in docs.replace("\n", "").replace(" ", ""), \
        "docs/mqtt.md shows this vector"


def test_python_signer_is_jcs() -> None:
    """`ronda cmd` (mqtt.signing.sign_command) signs the JCS bytes."""
    doc = sign_command(_key(), node="rw05", action="siren", cmd_id="c1", ts=1795830000,
                       args=VECTORS[1][0])
    assert doc["sig"] == VECTORS[1][2]
    assert canonical_json(-0.0) == b"0" and canonical_json(1e21) == b"1e+21"
    with pytest.raises(ValueError):
        canonical_json(2**53)  # beyond what JCS (IEEE 754 doubles) can carry exactly


def _node_js(request: dict[str, Any]) -> dict[str, Any]:
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.fail("node (Debian: nodejs) is needed for the second JCS implementation")
    out = subprocess.run([node, str(HERE / "js" / "sign_jcs.js")], input=json.dumps(request),
                         capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def test_javascript_signer_is_accepted_by_the_node() -> None:
    key = _key()
    now = int(time.time())
    args = {"state": "on", "for_s": 1e-7, "pattern": "sirène\u2028€"}
    got = _node_js({"key_pem": private_key_pem(key).decode(), "node": "rw05",
                    "cmd": {"id": "js-1", "ts": now, "action": "siren", "args": args},
                    "values": TRICKY})
    assert [base64.b64decode(c) for c in got["canonical"]] == [canonical_json(v)
                                                               for v in TRICKY]
    assert base64.b64decode(got["signed"]) == signed_bytes("rw05", "js-1", now, "siren", args)
    verifier = CommandVerifier("rw05", [public_key_b64(key.public_key())])
    raw = json.dumps(got["payload"], ensure_ascii=False).encode("utf-8")
    verdict = verifier.verify("siren", raw)
    assert verdict.ok, verdict.reason
    assert verdict.args == args
    # The same command for another node is refused: `node` is in the signed bytes.
    assert not CommandVerifier("rw06", [public_key_b64(key.public_key())]).verify(
        "siren", raw).ok
