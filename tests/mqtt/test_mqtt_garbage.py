"""Garbage is cheap: refused commands are logged at a bounded rate, and an empty payload
(how a retained command is cleared) is ignored without a reply."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from mqtt_helpers import BridgeNode, node_config

from mqtt.commands import RefusalLog
from tests.shared_broker import SharedBroker
from tests.waiting import wait_for


def test_refusal_log_is_bounded_with_a_summary_per_window(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [1000.0]
    logger = logging.getLogger("test.refusals")
    rlog = RefusalLog(burst=5, window_s=60, clock=lambda: now[0], logger=logger)
    with caplog.at_level(logging.WARNING, logger="test.refusals"):
        for i in range(100):
            rlog.refused(f"refused {i}", "payload is not JSON" if i % 2 else "bad signature")
            now[0] += 0.1
        assert len(caplog.records) == 5
        now[0] += 60
        rlog.refused("refused late", "bad signature")  # a new window: summary, then logged
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:5] == [f"refused {i}" for i in range(5)]
    assert lines[5].startswith("95 more command(s) refused in the last 60 s")
    assert "48 x payload is not JSON" in lines[5] and "47 x bad signature" in lines[5]
    assert lines[6] == "refused late" and len(lines) == 7


def test_flood_of_garbage_and_cleared_retained_command(broker: SharedBroker,
                                                       recorder_factory: Any, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    root = broker.root("rw05")
    caplog.set_level(logging.WARNING, logger="firmware.wiring.mqtt")
    rec = recorder_factory(broker.port, f"{root}/reply")
    with BridgeNode(node_config(tmp_path, broker)) as node:
        wait_for(lambda: node.bridge.link.connected, 15, "the connection")
        rec.client.publish(f"{root}/cmd/siren", b"", qos=1, retain=True)  # clearing
        for i in range(60):
            rec.client.publish(f"{root}/cmd/siren", json.dumps({"id": f"g{i}"}), qos=1)
        rec.wait_for(lambda m: len(m) >= 60, 20)
        time.sleep(0.5)  # on purpose: a 'nothing more comes' check needs time to pass
        assert node.bridge.commands_empty == 1
        assert node.bridge.commands_refused == 60
    replies = rec.json("/reply")
    assert [r["id"] for r in replies] == [f"g{i}" for i in range(60)], \
        "each refused command answered, the empty payload not"
    refused_lines = [r for r in caplog.records if "refused command" in r.getMessage()]
    assert len(refused_lines) == 5, "logged one by one only for the first few per minute"
