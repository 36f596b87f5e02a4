"""TLS with client certificates, and username/password, against a Mosquitto set up for it."""

from __future__ import annotations

import datetime
import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mqtt_helpers import BridgeNode, Recorder, node_config

from devtools.broker import LocalBroker, free_port
from mqtt.signing import private_key_pem
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]

ROOT = "ronda/v1/rw05"


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
          issuer_key: ec.EllipticCurvePrivateKey | None, *, ca: bool = False,
          ip: str | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip))]),
            critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and client certificates (node, watcher)."""
    out: dict[str, Path] = {}

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        out[f"{name}_cert"] = directory / f"{name}.crt"
        out[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{name}_key"] = directory / f"{name}.key"
        out[f"{name}_key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        out[f"{name}_key"].chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("ronda test CA", ca_key, None, None, ca=True)
    write("ca", ca, ca_key)
    for name, ip in [("server", "127.0.0.1"), ("rw05", None), ("watcher", None)]:
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, _cert(name, key, ca.subject, ca_key, ip=ip), key)
    return out


def test_tls_with_client_certificates(tmp_path: Path, keypair: Any) -> None:
    pki = make_pki(tmp_path)
    operator_key = tmp_path / "operator.pem"
    operator_key.write_bytes(private_key_pem(keypair[0]))
    port = free_port()
    conf = "\n".join([
        f"listener {port} 127.0.0.1", f"cafile {pki['ca_cert']}",
        f"certfile {pki['server_cert']}", f"keyfile {pki['server_key']}",
        "require_certificate true", "use_identity_as_username true",
        "allow_anonymous false", "user root"])
    with LocalBroker(port=port, extra_config=conf) as broker:  # its own: a TLS listener
        watcher = Recorder(broker.port, f"{ROOT}/#")
        watcher.client.tls_set(ca_certs=str(pki["ca_cert"]), certfile=str(pki["watcher_cert"]),
                               keyfile=str(pki["watcher_key"]))
        watcher.start()
        try:
            url = f"mqtts://127.0.0.1:{port}"
            good = node_config(tmp_path, [url], ca_file=str(pki["ca_cert"]),
                               cert_file=str(pki["rw05_cert"]), key_file=str(pki["rw05_key"]),
                               command_keys=[keypair[1]])
            with BridgeNode(good) as node:
                watcher.wait_for(lambda m: any(p == b"online" for _, p, *_ in m), 15)
                assert node.bridge.link.stats()["broker"] == url
                ping = subprocess.run(
                    [sys.executable, "-m", "firmware", "cmd", "rw05", "ping", "--key",
                     str(operator_key), "--broker", url, "--ca-file", str(pki["ca_cert"]),
                     "--cert-file", str(pki["watcher_cert"]), "--key-file",
                     str(pki["watcher_key"])], cwd=REPO, capture_output=True, text=True,
                    timeout=30)
                assert ping.returncode == 0 and "ok: pong" in ping.stdout, ping
            watcher.wait_for(lambda m: m[-1][1] == b"offline", 10)

            no_cert = node_config(tmp_path, [url], node="rw05", ca_file=str(pki["ca_cert"]),
                                  reconnect_min_s=0.2)
            with BridgeNode(no_cert) as node:
                _wait_error(node)
                assert not node.bridge.link.connected
            assert watcher.payloads("/status")[-1] == b"offline"
        finally:
            watcher.stop()


def _wait_error(node: BridgeNode, timeout: float = 10.0) -> str:
    return wait_for(lambda: node.bridge.link.last_error, timeout, "a connection error")


def test_username_password_from_secret_file(tmp_path: Path, recorder_factory: Any) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "rw05", "s3cret pass"],
                   check=True, capture_output=True)
    passwd.chmod(0o600)
    port = free_port()
    conf = "\n".join([f"listener {port} 127.0.0.1", "allow_anonymous false",
                      f"password_file {passwd}", "user root"])
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret pass\n")
    secret.chmod(0o600)
    wrong = tmp_path / "wrong-password"
    wrong.write_text("nope\n")
    wrong.chmod(0o600)
    with LocalBroker(port=port, extra_config=conf) as broker:  # its own: a TLS listener
        cfg = node_config(tmp_path, [broker.url], username="rw05", password_file=str(secret))
        watcher = Recorder(broker.port, f"{ROOT}/status")
        watcher.client.username_pw_set("rw05", "s3cret pass")
        watcher.start()
        try:
            with BridgeNode(cfg) as node:
                watcher.wait_for(lambda m: any(p == b"online" for _, p, *_ in m), 15)
                assert node.bridge.link.protocol == "5"
            bad = node_config(tmp_path, [broker.url], node="rw06", username="rw05",
                              password_file=str(wrong), reconnect_min_s=0.2)
            with BridgeNode(bad) as node:
                assert "refused" in _wait_error(node)
                assert not node.bridge.link.connected
        finally:
            watcher.stop()
