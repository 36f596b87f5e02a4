"""Serving the app: uvicorn on the caller's thread, and the node's TLS certificate.

`serve()` blocks until `stop` is set (the daemon runs it in a supervised component's
thread) and calls `beat()` about once a second while the server's loop is alive, so a
wedged event loop shows up as a stalled component.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import uvicorn

from support.files import atomic_write

log = logging.getLogger(__name__)

CERT, KEY = "web-tls.crt", "web-tls.key"


def self_signed(directory: Path, node: str) -> tuple[Path, Path]:
    """This node's own certificate (made once, kept in `directory`): names the host,
    ``<node>.local``, localhost and the node's addresses as they are now."""
    cert_path, key_path = directory / CERT, directory / KEY
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    import psutil
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in
                                     {socket.gethostname(), f"{node}.local", "localhost"}]
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(addr.address.split("%")[0])))
                except ValueError:
                    continue
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ronda {node}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), mode=0o600)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("web: made a self-signed certificate %s", cert_path)
    return cert_path, key_path


def serve(app, host: str, port: int, stop: threading.Event, *,
          certfile: Path | None = None, keyfile: Path | None = None,
          beat: Callable[[], None] = lambda: None,
          on_ready: Callable[[], None] = lambda: None) -> None:
    """Run `app` until `stop` is set. Raises OSError if the port cannot be bound."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            ssl_certfile=str(certfile) if certfile else None,
                            ssl_keyfile=str(keyfile) if keyfile else None,
                            lifespan="off", ws="wsproto", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)

    async def main() -> None:
        async def watch() -> None:
            while not server.started and not server.should_exit:
                await asyncio.sleep(0.05)
            if server.started:
                on_ready()
            while not stop.is_set():
                beat()
                await asyncio.sleep(0.5)
            server.should_exit = True

        watcher = asyncio.create_task(watch())
        try:
            await server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind: not in a daemon's thread
            raise OSError(f"web: cannot listen on {host}:{port}") from None
        finally:
            watcher.cancel()
        if not server.started and not stop.is_set():
            raise OSError(f"web: cannot listen on {host}:{port}")

    asyncio.run(main())
