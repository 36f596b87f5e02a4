"""Ronda Central: the Command Center's service (run by the city on a server).

It ingests everything the nodes publish under `ronda/v1/+/#` into a database (SQLite for a
small deployment, PostgreSQL for a city), and serves the operators' web console: the map of
posts, the alarm queue, node pages, the maintenance list, signed commands, the audit log and
the agencies' views and webhooks. Command: `ronda-central` (see `ronda-central --help`).

It uses `mqtt` (topics, schemas, signing) and `support`, never `firmware`.
"""

__version__ = "0.1.0"
