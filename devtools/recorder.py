"""Run the recorder alone (tests, soak, bench): ``python -m devtools.recorder --help``.

Prints one JSON line per storage state change on stdout, so a harness can follow it.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from drivers.cameras.base import StreamInput
from recorder.recorder import Recorder
from recorder.store import Limits


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m devtools.recorder",
        description="Record cameras into a store without the rest of the node.\n\n"
                    "example:\n  python -m devtools.recorder --path /tmp/rec --segment-s 1 "
                    "--quota 20M --camera a=scene.mp4 --input-option re= "
                    "--input-option stream_loop=-1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--path", type=Path, required=True, help="store directory")
    p.add_argument("--camera", action="append", default=[], metavar="NAME=URL")
    p.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                   help="ffmpeg input option for every camera; KEY= for a flag")
    p.add_argument("--segment-s", type=float, default=10.0)
    p.add_argument("--quota", type=_size, default=_size("1G"))
    p.add_argument("--event-share", type=float, default=0.3)
    p.add_argument("--min-free", type=_size, default=0)
    p.add_argument("--check-every-s", type=float, default=5.0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    options: dict[str, object] = {}
    for item in args.input_option:
        key, _, value = item.partition("=")
        options[key] = value if value else None
    cameras = {}
    for item in args.camera:
        name, _, url = item.partition("=")
        cameras[name] = StreamInput(url=url, options=dict(options))

    def storage(state: str, reason: str, detail: dict) -> None:
        print(json.dumps({"storage": state, "reason": reason}), flush=True)

    rec = Recorder(args.path, cameras, segment_s=args.segment_s,
                   limits=Limits(quota=args.quota, event_share=args.event_share,
                                 min_free=args.min_free),
                   on_storage_state=storage, check_every_s=args.check_every_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps({"started": True}), flush=True)
    rec.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
