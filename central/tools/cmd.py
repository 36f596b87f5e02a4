"""`ronda cmd NODE ACTION ...`: sign a command, send it, wait for the node's reply.

A Command Center tool: `ronda` launches it (firmware/tools.py); a node's release
does not have it."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from central.mqtt_client import add_client_arguments, client_options, connect
from central.tools import formatter, password
from mqtt.commands import ACTIONS
from mqtt.signing import load_private_key, sign_command
from mqtt.topics import Topics

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NO_REPLY, EXIT_NO_BROKER = 0, 1, 2, 3, 4

DESCRIPTION = """\
Sign a command with your private key, publish it to <prefix>/<NODE>/cmd/<ACTION>,
and wait for the node's answer on <prefix>/<NODE>/reply.

actions and their VALUE:
  siren on|off [--for S]     sound or stop the siren (on for S seconds)
  light on|off [--for S]     the flood light
  arm armed|disarmed|schedule
  ack [ALARM_ID]             acknowledge the current (or given) alarm
  snapshot [CAMERA]          ask for fresh camera snapshots
  ping                       check the node answers
  live CAMERA [--arg stream=sub] [--arg ttl_s=300]
                             push the camera to the media server (ttl at most 600 s;
                             send again to renew)
  live-stop CAMERA           stop that push
  fetch CAMERA --arg start=UNIX --arg end=UNIX --arg upload_url=URL
                             export the range and HTTP PUT it to URL (docs/uplink.md)

extra arguments the owner understands, with --arg KEY=VALUE (VALUE read as JSON
when it parses, else as text): siren pattern=titir, light mode=strobe,
arm schedule='["22:00-05:00"]', snapshot timeout=3

exit status: 0 done, 1 refused or failed on the node, 2 bad usage,
             3 no reply in time, 4 broker unreachable

examples:
  ronda cmd rw05 ping --key operator.pem --broker mqtts://cc.example:8883 \\
      --ca-file ca.crt --cert-file operator.crt --key-file operator.key
  ronda cmd mgl-kemirirejo-rw05 siren on --for 60 --key operator.pem
  ronda cmd mgl-kemirirejo-rw05 snapshot gate --save gate.jpg --key operator.pem
  ronda cmd mgl-kemirirejo-rw05 arm schedule --key operator.pem \\
      --arg schedule='["22:00-05:00"]'
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cmd", formatter_class=formatter, description=DESCRIPTION)
    p.add_argument("node", metavar="NODE", help="node id, e.g. mgl-kemirirejo-rw05")
    p.add_argument("action", metavar="ACTION", choices=ACTIONS, help=", ".join(ACTIONS))
    p.add_argument("value", metavar="VALUE", nargs="?", help="see the list above")
    p.add_argument("--for", dest="for_s", type=float, metavar="S",
                   help="siren/light: seconds to stay on")
    p.add_argument("--arg", "-a", action="append", default=[], metavar="KEY=VALUE",
                   help="an extra argument (repeatable), e.g. --arg pattern=titir")
    p.add_argument("--key", "-k", type=Path, required=True,
                   help="your Ed25519 private key (ronda keys generate)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the reply (default: 10)")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.add_argument("--save", type=Path, metavar="FILE",
                   help="snapshot: also save the new picture (JPEG) to FILE")
    add_client_arguments(p)
    p.set_defaults(func=send_command)


def command_args(action: str, value: str | None, for_s: float | None) -> dict[str, Any]:
    """The `args` object of an action from the command line's VALUE and --for."""
    if action in ("siren", "light"):
        if value not in ("on", "off"):
            raise ValueError(f"{action} needs on or off")
        args: dict[str, Any] = {"state": value}
        if for_s is not None:
            args["for_s"] = int(for_s) if float(for_s).is_integer() else for_s
        return args
    if for_s is not None:
        raise ValueError("--for goes only with siren or light")
    if action == "arm":
        if value not in ("armed", "disarmed", "schedule"):
            raise ValueError("arm needs armed, disarmed or schedule")
        return {"mode": value}
    if action == "ack":
        return {"alarm_id": value} if value else {}
    if action in ("snapshot", "live", "live-stop", "fetch"):
        return {"camera": value} if value else {}
    if value:
        raise ValueError(f"{action} takes no value")
    return {}


def extra_args(pairs: list[str]) -> dict[str, Any]:
    """--arg KEY=VALUE pairs; VALUE as JSON if it parses, else the text itself."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def send_command(args: argparse.Namespace) -> int:
    try:
        cmd_args = {**command_args(args.action, args.value, args.for_s), **extra_args(args.arg)}
        private = load_private_key(args.key.read_bytes())
    except (ValueError, OSError) as exc:
        print(f"ronda cmd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    topics = Topics(args.prefix, args.node)
    doc = sign_command(private, node=args.node, action=args.action, args=cmd_args)
    got = threading.Event()
    reply: dict[str, Any] = {}
    subscribed = threading.Event()
    pictures: dict[str, bytes] = {}  # camera -> JPEG published after we subscribed
    picture = threading.Condition()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        if msg.topic.endswith("/snapshot"):
            if not msg.retain:  # retained ones are older than this command
                with picture:
                    pictures[msg.topic.split("/")[-2]] = bytes(msg.payload)
                    picture.notify_all()
            return
        try:
            answer = json.loads(msg.payload)
        except ValueError:
            return
        if isinstance(answer, dict) and answer.get("id") == doc["id"]:
            reply.update(answer)
            got.set()

    try:
        client = connect(client_options(args, password(args)))
    except (OSError, ConnectionError) as exc:
        print(f"ronda cmd: cannot reach the broker: {exc}", file=sys.stderr)
        return EXIT_NO_BROKER
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    try:
        wanted = [(topics.reply, 1)]
        if args.save is not None:
            wanted.append((topics.camera_snapshot("+"), 0))
        client.subscribe(wanted)
        subscribed.wait(5)
        started = time.monotonic()
        client.publish(topics.command(args.action), json.dumps(doc), qos=1)
        if not got.wait(args.timeout):
            print(f"no reply from {args.node} within {args.timeout:.0f} s "
                  f"(command id {doc['id']}); is the node online?", file=sys.stderr)
            return EXIT_NO_REPLY
        elapsed_ms = (time.monotonic() - started) * 1000
        if args.save is not None and reply.get("ok"):
            camera = str((reply.get("data") or {}).get("camera") or args.value or "")
            with picture:
                picture.wait_for(lambda: camera in pictures, timeout=args.timeout)
                jpeg = pictures.get(camera)
            if jpeg is None:
                print(f"the node took the snapshot but no picture of {camera!r} arrived on "
                      f"{topics.camera_snapshot(camera)}", file=sys.stderr)
                return EXIT_NO_REPLY
            args.save.write_bytes(jpeg)
    finally:
        client.disconnect()
        client.loop_stop()
    if args.json:
        print(json.dumps(reply))
    else:
        verdict = "ok" if reply.get("ok") else "REFUSED"
        data = f" {json.dumps(reply['data'])}" if reply.get("data") else ""
        print(f"{args.node} {args.action}: {verdict}: {reply.get('message', '')}{data} "
              f"({elapsed_ms:.0f} ms, id {doc['id']})")
        if args.save is not None and reply.get("ok"):
            print(f"saved {args.save}")
    return EXIT_OK if reply.get("ok") else EXIT_REFUSED
