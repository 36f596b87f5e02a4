"""`ronda dev-node`: the real daemon plus synthetic events, for tests and benches.

A development command: not part of a node's release (its `ronda --help` does not list
it); it runs from a source checkout or a full install.

The node runs the normal wiring of its config (`Daemon`: every configured area, the
durable MQTT outbox, status, health, commands). Events come from `--events N` at start
and from lines on stdin:

    events N [panic]   publish N synthetic events on the bus (person ObjectEvents, or
                       PanicEvents with `panic`); ids are `dev-<run-id>-<n>`
    quit               stop the node in order (status `offline`)

After each request it prints `stored <total>` once every requested event is committed
to the outbox (SQLite, fsync'd), so a test knows when a kill -9 can no longer lose them.
End of stdin does not stop the node; SIGTERM / Ctrl-C do, as for `ronda run`.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from firmware.commands import formatter, load_config_or_exit
from firmware.events import ObjectEvent, PanicEvent

if TYPE_CHECKING:
    from firmware.daemon import Daemon
    from firmware.wiring.mqtt import MqttBridge

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dev-node", formatter_class=formatter,
        description=__doc__.split("\n", 2)[2] + "\nexamples:\n"
        "  ronda dev-node --config dev.toml --events 1000\n"
        "  printf 'events 100\\nevents 1 panic\\nquit\\n' | ronda dev-node -c dev.toml")
    p.add_argument("--config", "-c", required=True, help="node config file")
    p.add_argument("--run-id", default="", help="tag in event ids (default: start time)")
    p.add_argument("--events", type=int, default=0, metavar="N",
                   help="publish N person events right after start")
    p.set_defaults(func=dev_node)


def dev_node(args: argparse.Namespace) -> int:
    cfg = load_config_or_exit(args.config)
    from firmware.daemon import Daemon

    daemon = Daemon(cfg)
    bridge = daemon.context.shared.get("mqtt")
    if bridge is None:
        print("dev-node: [mqtt] is disabled in this config", file=sys.stderr)
        return 2
    feeder = Feeder(daemon, bridge, args.run_id or str(int(time.time())))

    def _stop(signum: int, _frame: object) -> None:
        log.info("got %s", signal.Signals(signum).name)
        daemon.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    threading.Thread(target=feeder.run, args=(args.events,), daemon=True).start()
    return daemon.run()


class Feeder:
    """Publishes synthetic events on the daemon's bus and reports when they are stored."""

    def __init__(self, daemon: Daemon, bridge: MqttBridge, run_id: str) -> None:
        self.daemon = daemon
        self.bridge = bridge
        self.run_id = run_id
        self.produced = 0

    def publish(self, count: int, panic: bool = False) -> None:
        """Publish `count` events, wait until all are in the outbox, print `stored N`."""
        for _ in range(count):
            event_id = f"dev-{self.run_id}-{self.produced:06d}"
            if panic:
                event = PanicEvent(id=event_id, alarm_id=event_id, kind="panic",
                                   phase="raised", source="dev")
            else:
                event = ObjectEvent(id=event_id, camera="dev", track_id=str(self.produced),
                                    phase="start", label="person", score=0.9)
            self.daemon.bus.publish(event)
            self.produced += 1
        while self.bridge.events_stored < self.produced:
            time.sleep(0.01)
        print(f"stored {self.bridge.events_stored}", flush=True)

    def run(self, initial: int) -> None:
        if initial:
            self.publish(initial)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] == "quit":
                self.daemon.request_stop()
                return
            if words[0] != "events" or len(words) < 2 or not words[1].isdigit():
                print(f"? {line.strip()} (expected: events N [panic] | quit)", flush=True)
                continue
            self.publish(int(words[1]), "panic" in words[2:])
