"""`ronda dev-node`: the real daemon plus a stdin-driven source of synthetic events.

For tests and benches of the MQTT path (outbox, outage, kill -9): the node runs the
normal wiring of its config (`Daemon`), and each line on stdin asks for events:

    events N [panic]   publish N synthetic events on the bus (person ObjectEvents, or
                       PanicEvents with `panic`); ids are `dev-<run>-<n>`
    quit               stop the node in order (status `offline`)

After each request it prints `stored <total>` once every requested event is in the
durable outbox (SQLite, fsync'd), so a test knows when a kill -9 can no longer lose them.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from typing import TYPE_CHECKING

from firmware import config
from firmware.commands import formatter
from firmware.events import ObjectEvent, PanicEvent

if TYPE_CHECKING:
    from firmware.daemon import Daemon
    from firmware.wiring.mqtt import MqttBridge

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev-node", formatter_class=formatter,
        help="(development) run the node with synthetic events requested on stdin",
        description=__doc__.split("\n", 2)[2] + "\nexample:\n"
        "  printf 'events 100\\nquit\\n' | ronda dev-node --config dev.toml --run-id a")
    p.add_argument("--config", "-c", required=True, help="node config file")
    p.add_argument("--run-id", default="", help="tag in event ids (default: start time)")
    p.set_defaults(func=dev_node)


def dev_node(args: argparse.Namespace) -> int:
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return config.EX_CONFIG
    from firmware.daemon import Daemon

    daemon = Daemon(cfg)
    bridge = daemon.context.shared.get("mqtt")
    if bridge is None:
        print("dev-node: [mqtt] is disabled in this config", file=sys.stderr)
        return 2
    run_id = args.run_id or str(int(time.time()))
    feeder = threading.Thread(target=_feed, args=(daemon, bridge, run_id), daemon=True)
    feeder.start()
    return daemon.run()


def _feed(daemon: Daemon, bridge: MqttBridge, run_id: str) -> None:
    produced = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        if words[0] != "events" or len(words) < 2 or not words[1].isdigit():
            print(f"? {line.strip()}", flush=True)
            continue
        count, panic = int(words[1]), "panic" in words[2:]
        for _ in range(count):
            event_id = f"dev-{run_id}-{produced:06d}"
            if panic:
                event = PanicEvent(id=event_id, alarm_id=event_id, kind="panic",
                                   phase="raised", source="dev")
            else:
                event = ObjectEvent(id=event_id, camera="dev", track_id=str(produced),
                                    phase="start", label="person", score=0.9)
            daemon.bus.publish(event)
            produced += 1
        while bridge.events_stored < produced:
            time.sleep(0.01)
        print(f"stored {bridge.events_stored}", flush=True)
    daemon.request_stop()
