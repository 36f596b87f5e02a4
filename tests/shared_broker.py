"""One test's share of the session's Mosquitto: the same broker for every test, a topic
prefix no other test uses.

    def test_x(broker, tmp_path):
        cfg = {"mqtt": broker.mqtt(command_keys=[public])}   # brokers + prefixes
        rec = Recorder(broker.port, f"{broker.root('rw05')}/#")

Retained messages and wills of one test live under its own prefix, so the next test
cannot hear them. Client ids are not namespaced (the node's is `ronda-<node id>`): tests
run one after the other and each stops its clients, which is what keeps them apart. A
test that stops, restarts or signals the broker, or needs it configured (TLS, ACL,
persistence), starts its own `LocalBroker` and says why.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from devtools.broker import LocalBroker

# Low latency for request/reply round trips (commands, fuzzing through the broker).
SESSION_BROKER_CONFIG = "set_tcp_nodelay true"

_serial = itertools.count(1)


@dataclass(frozen=True)
class SharedBroker:
    """The session broker as one test sees it."""

    port: int
    namespace: str  # e.g. 'test/0042-test_topic_contract'

    @classmethod
    def for_test(cls, broker: LocalBroker, test_name: str) -> SharedBroker:
        slug = re.sub(r"[^A-Za-z0-9_-]", "_", test_name)[:48]
        return cls(broker.port, f"test/{next(_serial):04d}-{slug}")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def prefix(self) -> str:
        """This test's `[mqtt] prefix` (the product's default is 'ronda/v1')."""
        return f"{self.namespace}/ronda/v1"

    @property
    def ha_prefix(self) -> str:
        """This test's `[mqtt] homeassistant_prefix`."""
        return f"{self.namespace}/homeassistant"

    def root(self, node: str) -> str:
        """Where `node` publishes: '<prefix>/<node>'."""
        return f"{self.prefix}/{node}"

    def mqtt(self, **settings: Any) -> dict[str, Any]:
        """A `[mqtt]` config section pointing at this broker and this test's prefixes."""
        return {"brokers": [self.url], "prefix": self.prefix,
                "homeassistant_prefix": self.ha_prefix, **settings}
