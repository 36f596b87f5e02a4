"""The database schema, as numbered migrations (never edit one that has shipped: add one).

Each migration is a list of statements; a statement is SQL both engines accept, with
`{serial}` and `{blob}` filled in per engine, or a dict {"sqlite": ..., "postgresql": ...}
where they differ (the audit log's append-only triggers).
"""

from __future__ import annotations

AUDIT_GUARD_SQLITE = [
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END""",
]
AUDIT_GUARD_POSTGRESQL = [
    """CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$""",
    """CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
       FOR EACH ROW EXECUTE FUNCTION audit_append_only()""",
    """CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
       FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()""",
]

MIGRATIONS: list[list[str | dict[str, str]]] = [
    # 1: what the nodes publish, and the console's own records
    [
        """CREATE TABLE nodes (
            id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', lat DOUBLE PRECISION,
            lon DOUBLE PRECISION, status TEXT NOT NULL DEFAULT 'unknown',
            status_ts DOUBLE PRECISION,
            health TEXT, health_ts DOUBLE PRECISION, health_received DOUBLE PRECISION,
            health_problems TEXT, last_seen DOUBLE PRECISION,
            events INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0,
            min_seq INTEGER, max_seq INTEGER, first_seen DOUBLE PRECISION)""",
        """CREATE TABLE health (
            node TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, received DOUBLE PRECISION,
            temperature_c DOUBLE PRECISION, disk_percent DOUBLE PRECISION,
            undervoltage INTEGER, uptime_s DOUBLE PRECISION, cpu_percent DOUBLE PRECISION,
            PRIMARY KEY (node, ts))""",
        """CREATE TABLE events (
            id TEXT PRIMARY KEY, node TEXT NOT NULL, seq INTEGER, type TEXT NOT NULL,
            kind TEXT, phase TEXT, alarm_id TEXT, camera TEXT, ts DOUBLE PRECISION NOT NULL,
            received DOUBLE PRECISION NOT NULL, doc TEXT NOT NULL)""",
        "CREATE INDEX events_node_ts ON events (node, ts)",
        """CREATE TABLE snapshots (
            event_id TEXT PRIMARY KEY, node TEXT NOT NULL, jpeg {blob} NOT NULL,
            received DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE camera_snapshots (
            node TEXT NOT NULL, camera TEXT NOT NULL, jpeg {blob} NOT NULL,
            received DOUBLE PRECISION NOT NULL, PRIMARY KEY (node, camera))""",
        """CREATE TABLE outputs (
            node TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL, cause TEXT,
            ts DOUBLE PRECISION, until DOUBLE PRECISION, PRIMARY KEY (node, name))""",
        """CREATE TABLE replies (
            id {serial}, node TEXT NOT NULL, cmd_id TEXT, action TEXT, ok INTEGER NOT NULL,
            message TEXT NOT NULL, data TEXT, ts DOUBLE PRECISION,
            received DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX replies_cmd ON replies (cmd_id)",
        """CREATE TABLE rejects (
            id {serial}, topic TEXT NOT NULL, error TEXT NOT NULL, payload TEXT,
            received DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE alarms (
            id {serial}, node TEXT NOT NULL, alarm_id TEXT NOT NULL, kind TEXT NOT NULL,
            source TEXT, raised_ts DOUBLE PRECISION NOT NULL, received DOUBLE PRECISION,
            state TEXT NOT NULL DEFAULT 'new', post_phase TEXT NOT NULL DEFAULT 'raised',
            presses INTEGER NOT NULL DEFAULT 1,
            claimed_by TEXT, acked_by TEXT, acked_ts DOUBLE PRECISION,
            updated DOUBLE PRECISION NOT NULL, UNIQUE (node, alarm_id))""",
        """CREATE TABLE notes (
            id {serial}, alarm INTEGER NOT NULL, author TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL, text TEXT NOT NULL)""",
        """CREATE TABLE dispatches (
            id {serial}, alarm INTEGER NOT NULL, agency TEXT NOT NULL, author TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL, body TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            delivered_ts DOUBLE PRECISION, next_try DOUBLE PRECISION, last_error TEXT)""",
        """CREATE TABLE commands (
            id TEXT PRIMARY KEY, node TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL,
            author TEXT NOT NULL, sent_ts DOUBLE PRECISION NOT NULL, alarm INTEGER)""",
        """CREATE TABLE users (
            name TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL,
            agency TEXT, created DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE sessions (
            token TEXT PRIMARY KEY, username TEXT NOT NULL, expires DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE audit (
            id {serial}, ts DOUBLE PRECISION NOT NULL, username TEXT NOT NULL,
            action TEXT NOT NULL, target TEXT, detail TEXT, result TEXT NOT NULL)""",
        {"sqlite": AUDIT_GUARD_SQLITE[0], "postgresql": AUDIT_GUARD_POSTGRESQL[0]},
        {"sqlite": AUDIT_GUARD_SQLITE[1], "postgresql": AUDIT_GUARD_POSTGRESQL[1]},
        {"postgresql": AUDIT_GUARD_POSTGRESQL[2]},
    ],
    [  # 2: footage requested from the console (central/footage.py)
        """CREATE TABLE footage (
            id TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, node TEXT NOT NULL,
            camera TEXT NOT NULL, start_ts DOUBLE PRECISION NOT NULL,
            end_ts DOUBLE PRECISION NOT NULL, author TEXT NOT NULL,
            requested DOUBLE PRECISION NOT NULL, expires DOUBLE PRECISION NOT NULL,
            cmd_id TEXT, state TEXT NOT NULL, message TEXT, bytes INTEGER,
            uploaded DOUBLE PRECISION)""",
        "CREATE INDEX footage_node ON footage (node, requested)",
    ],
]
