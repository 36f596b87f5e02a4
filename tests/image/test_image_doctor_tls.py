"""`ronda doctor` against a Mosquitto that requires TLS and a password: the round trip
passes with the node's CA and credentials, and a wrong password or a missing CA fails
the mqtt check with the matching hint."""

from __future__ import annotations

import datetime
import ipaddress
import json
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devtools.broker import LocalBroker, free_port
from firmware.cli import main


def _pem_pair(directory: Path, name: str, cert: x509.Certificate, key) -> tuple[Path, Path]:
    crt, pem = directory / f"{name}.crt", directory / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    return crt, pem


def small_pki(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(cn: str, key, issuer: x509.Name | None, issuer_key, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        return builder.sign(issuer_key or key, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = cert("doctor test CA", ca_key, None, None, True)
    ca_crt, _ = _pem_pair(directory, "ca", ca, ca_key)
    srv_crt, srv_pem = _pem_pair(directory, "server",
                                 cert("127.0.0.1", srv_key, ca.subject, ca_key, False), srv_key)
    return {"ca": ca_crt, "cert": srv_crt, "key": srv_pem}


@pytest.fixture
def tls_broker(tmp_path: Path):
    pki = small_pki(tmp_path)
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "rw05", "benar"], check=True,
                   capture_output=True)
    port = free_port()
    conf = "\n".join([f"listener {port} 127.0.0.1", f"cafile {pki['ca']}",
                      f"certfile {pki['cert']}", f"keyfile {pki['key']}",
                      "allow_anonymous false", f"password_file {passwd}", "user root"])
    with LocalBroker(port=port, extra_config=conf) as broker:  # its own: a TLS listener
        yield broker, pki


def doctor_mqtt(tmp_path: Path, capsys, port: int, password: str, ca: Path | None) -> dict:
    secret = tmp_path / "mqtt.password"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    cfg = tmp_path / "ronda.toml"
    ca_line = f'ca_file = "{ca}"\n' if ca else ""
    cfg.write_text(f'[node]\nid = "rw05"\n[mqtt]\nbrokers = ["mqtts://127.0.0.1:{port}"]\n'
                   f'username = "rw05"\npassword_file = "{secret}"\n{ca_line}'
                   '[gpio]\nenabled = false\n')
    code = main(["doctor", "--json", "-c", str(cfg), "--timeout", "5",
                 "--skip", "cameras,storage,model,gpio,clock,power"])
    report = json.loads(capsys.readouterr().out)
    (check,) = [c for c in report["checks"] if c["name"] == "mqtt"]
    check["exit_code"] = code
    return check


def test_tls_and_password_round_trip(tmp_path, capsys, tls_broker):
    broker, pki = tls_broker
    check = doctor_mqtt(tmp_path, capsys, broker.port, "benar", pki["ca"])
    assert check["status"] == "ok" and check["exit_code"] == 0, check
    assert check["data"]["tls"] is True and "user rw05" in check["detail"]


def test_wrong_password_names_the_login(tmp_path, capsys, tls_broker):
    broker, pki = tls_broker
    check = doctor_mqtt(tmp_path, capsys, broker.port, "salah", pki["ca"])
    assert check["status"] == "fail" and check["exit_code"] == 1
    assert "password" in check["hint"], check


def test_unknown_ca_points_at_tls_and_the_clock(tmp_path, capsys, tls_broker):
    broker, _pki = tls_broker
    check = doctor_mqtt(tmp_path, capsys, broker.port, "benar", None)
    assert check["status"] == "fail" and "certificate" in check["detail"].lower()
    assert "ca_file" in check["hint"] and "clock" in check["hint"]
