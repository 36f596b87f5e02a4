"""A lighter version of bench/central.py: simulated posts (`central.devtools.fleet_sim`)
opening with a burst (every node raises an event in the same second), two ingest workers
sharing the load into PostgreSQL: every event stored once, no seq hole, every payload valid."""

from __future__ import annotations

import pytest

from central import views
from central.db import Database
from central.devtools.fleet import CityFleet
from central.ingest import IngestWorker
from central.mqtt_client import ClientOptions
from central.settings import CentralSettings
from tests.waiting import all_of, wait_for


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_200_posts_with_a_burst_two_workers_zero_lost_zero_duplicated(db: Database, broker):
    opts = ClientOptions(broker=broker.url)
    workers = [IngestWorker(db, opts, client_id=f"t-scale-{i}", group="central").start()
               for i in (1, 2)]
    try:
        assert all(w.wait_connected() for w in workers)
        result = CityFleet(opts, nodes=200, duration_s=3, rate_per_node=0.5, burst=True,
                           crash_fraction=0.05, seed=7).run()
        assert result.ok, result
        assert result.sent >= 200
        wait_for(lambda: db.scalar("SELECT count(*) FROM events") == result.sent, 30,
                 f"{result.sent} events stored")
        assert db.scalar("SELECT count(*) FROM rejects") == 0
        rows = views.nodes(db, CentralSettings())
        assert len(rows) == 200
        assert sum(r["lost"] for r in rows) == 0
        assert all_of(rows, lambda r: r["lat"] is not None, "posts")
        wait_for(lambda: sum(w.stored for w in workers) == result.sent, 10, "worker counts")
        assert all(w.stored > 0 for w in workers)
        # the crashed posts' last wills reached the console too
        wait_for(lambda: db.scalar("SELECT count(*) FROM nodes WHERE status = 'offline'")
                 == 200, 15, "every post offline at the end (wills and orderly stops)")
    finally:
        for w in workers:
            w.stop()
