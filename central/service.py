"""Running the parts: ingest workers, the web console (uvicorn), the webhook sender."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from central.commands import Commander
from central.db import Database
from central.ingest import IngestWorker
from central.mqtt_client import ClientOptions
from central.settings import CentralSettings, read_secret
from central.webhooks import WebhookSender

log = logging.getLogger(__name__)


def client_options(settings: CentralSettings) -> ClientOptions:
    m = settings.mqtt
    return ClientOptions(broker=m.broker, ca_file=m.ca_file, cert_file=m.cert_file,
                         key_file=m.key_file, username=m.username,
                         password=read_secret(m.password_file) if m.password_file else None)


def make_worker(db: Database, settings: CentralSettings, client_id: str | None = None,
                group: str | None = None) -> IngestWorker:
    m = settings.mqtt
    return IngestWorker(db, client_options(settings), prefix=m.prefix,
                        client_id=client_id or m.client_id,
                        group=(m.group if group is None else group) or None,
                        session_expiry_s=m.session_expiry_s)


def wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def run_ingest(settings: CentralSettings, client_id: str | None = None) -> int:
    db = Database(settings.database.url).migrate()
    worker = make_worker(db, settings, client_id).start()
    print(f"ingest {worker.client_id} running ({settings.mqtt.broker} -> {db.dialect})",
          flush=True)
    try:
        wait_for_signal()
    finally:
        worker.stop()
        db.close()
    return 0


def run_web(settings: CentralSettings, with_ingest: bool = False,
            port: int | None = None) -> int:
    import uvicorn

    from central.web import ChangeFeed, create_app

    db = Database(settings.database.url).migrate()
    feed = ChangeFeed(db)
    worker = None
    if with_ingest:  # in one process the ingest tells the live view at once
        worker = make_worker(db, settings)
        worker.on_change = lambda out: feed.poke() if out.alarms_changed else None
        worker.start()
    commander = Commander(db, client_options(settings), settings.commands.key_file,
                          prefix=settings.mqtt.prefix,
                          reply_timeout_s=settings.commands.reply_timeout_s)
    webhooks = WebhookSender(db, settings).start()
    app = create_app(db, settings, commander, webhooks, feed)
    config = uvicorn.Config(app, host=settings.web.host, port=port or settings.web.port,
                            log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"console on http://{settings.web.host}:{config.port}/"
          + (" with ingest" if worker else ""), flush=True)
    try:
        server.run()
    finally:
        webhooks.stop()
        commander.close()
        if worker is not None:
            worker.stop()
        db.close()
    return 0


def default_config_path() -> Path | None:
    path = Path("/etc/ronda-central/central.toml")
    return path if path.exists() else None
