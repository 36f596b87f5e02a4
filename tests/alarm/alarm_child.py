"""A node's alarm area alone, on mock pins, driven over stdin: the subject of the kill test.

Run as ``python tests/alarm/alarm_child.py STATE_DIR``. It builds the alarm area with the
real wiring, prints every bus message as a JSON line, and obeys lines on stdin:
``press NAME``, ``release NAME``, ``pins`` (prints the output pins' levels), ``stop``.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alarm_kit import PINS, Node

OUTPUTS = ("siren", "light", "status_led", "buzzer")
_print_lock = threading.Lock()


def say(**data) -> None:
    with _print_lock:
        print(json.dumps(data, default=str), flush=True)


def main() -> int:
    node = Node(Path(sys.argv[1]))
    node.bus.subscribe(object, lambda m: say(msg=type(m).__name__,
                                             **{k: v for k, v in vars(m).items()
                                                if k not in ("reply", "jpeg", "snapshot")}),
                       name="stdout")
    pins = {name: node.factory.pin(PINS[name]) for name in OUTPUTS}
    say(ready=True, pins={n: bool(p.state) for n, p in pins.items()})
    node.start()
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "press":
            node.press(words[1])
        elif words[0] == "release":
            node.release(words[1])
        elif words[0] == "stop":
            break
        say(pins={n: bool(p.state) for n, p in pins.items()})
    node.stop()
    say(stopped=True, pins={n: bool(p.state) for n, p in pins.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
