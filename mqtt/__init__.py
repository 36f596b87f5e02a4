"""MQTT link to the city's broker: status, health, durable events, signed commands.

Modules (design notes: docs/mqtt.md):

- `topics`: the topic contract under `<prefix>/<node_id>`;
- `outbox`: the SQLite outbox (seq, durability, bounds, group commit);
- `link`: the connection (failover, TLS, last will, MQTT 5 -> 3.1.1) and the outbox pump;
- `commands`, `signing`: Ed25519-signed commands, their exact signed bytes and checks;
- `replies`: one reply per command, the timeout reply, the replay guard kept in the outbox;
- `payloads`, `schema`, `schemas/*.json`: the published JSON documents and their schemas;
- `discovery`: Home Assistant discovery; `watch`, `fleet`, `tools`: operator tools.

The package takes plain values and callbacks; `firmware/wiring/mqtt.py` connects it to
the daemon's bus.
"""
