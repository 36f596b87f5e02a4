"""`ronda cameras list|probe|snapshot`: what cameras this node can see."""

from __future__ import annotations

import argparse
import json
import sys

from firmware.commands import formatter, load_config_or_exit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cameras", formatter_class=formatter, help="list, probe and snapshot cameras",
        description="Look at cameras before (or without) running the node.\n\n"
                    "examples:\n"
                    "  ronda cameras list                       USB cameras and their formats\n"
                    "  ronda cameras probe rtsp://admin:pw@192.168.1.64/Streaming/Channels/101\n"
                    "  ronda cameras probe -c /etc/ronda/ronda.toml      every configured camera\n"
                    "  ronda cameras snapshot -c /etc/ronda/ronda.toml gang-utara -o gang.jpg")
    csub = p.add_subparsers(dest="cameras_command", metavar="ACTION")

    lp = csub.add_parser("list", formatter_class=formatter,
                         help="list V4L2 (USB) devices and the formats they offer",
                         description="List /dev/video* with each pixel format and frame size.\n"
                                     "A camera offering h264 is recorded without encoding;\n"
                                     "mjpeg or raw ones are encoded (hardware if available).\n\n"
                                     "example:\n  ronda cameras list --json")
    lp.add_argument("--json", action="store_true", help="print JSON instead of a table")
    lp.set_defaults(func=list_devices)

    pp = csub.add_parser("probe", formatter_class=formatter,
                         help="show codec, size and frame rate of a stream",
                         description="Ask ffprobe what a stream carries, and say in plain words\n"
                                     "why not if it cannot (wrong password, refused, silent).\n"
                                     "Passwords never appear in the output.\n\n"
                                     "examples:\n  ronda cameras probe rtsp://127.0.0.1:8554/cam\n"
                                     "  ronda cameras probe -c /etc/ronda/ronda.toml")
    pp.add_argument("url", nargs="?", help="rtsp:// or http:// URL (else: cameras of -c)")
    pp.add_argument("--config", "-c", help="probe every enabled network camera of this file")
    pp.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    pp.set_defaults(func=probe_streams)

    sp = csub.add_parser("snapshot", formatter_class=formatter,
                         help="save one JPEG of a configured camera",
                         description="Grab one picture of a camera's detect stream. A USB or\n"
                                     "CSI camera has one user at a time: stop the node first\n"
                                     "(systemctl stop ronda) or ask it: the `snapshot` command.\n\n"
                                     "example:\n  ronda cameras snapshot -c ronda.toml gate "
                                     "-o gate.jpg")
    sp.add_argument("camera", help="camera name from the config")
    sp.add_argument("--config", "-c", default="/etc/ronda/ronda.toml", help="config file")
    sp.add_argument("--output", "-o", default="snapshot.jpg", help="JPEG file to write")
    sp.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    sp.set_defaults(func=snapshot)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def list_devices(args: argparse.Namespace) -> int:
    from drivers.cameras.usb import list_devices as v4l2_devices

    devices = v4l2_devices()
    if args.json:
        print(json.dumps({dev: [vars(f) for f in fmts] for dev, fmts in devices.items()},
                         indent=2))
        return 0
    if not devices:
        print("no V4L2 devices (/dev/video*) on this machine")
        return 0
    for dev, formats in devices.items():
        if not formats:
            print(f"{dev}: no capture formats (metadata or codec node)")
            continue
        print(f"{dev}:")
        for f in formats:
            kind = "compressed" if f.compressed else "raw"
            print(f"  {f.name:<10} {kind:<10} {' '.join(f.sizes) or '(sizes not listed)'}")
    return 0


def _configured(path: str):
    return load_config_or_exit(path)


def probe_streams(args: argparse.Namespace) -> int:
    from drivers.cameras.base import StreamInput, mask_credentials
    from drivers.cameras.factory import make_camera
    from drivers.cameras.probe import ProbeError, probe
    from drivers.cameras.rtsp import input_options
    from firmware.config import read_secret

    targets: list[tuple[str, StreamInput, bool | None]] = []  # label, stream, audio setting
    if args.url:
        targets.append((mask_credentials(args.url), StreamInput(args.url,
                                                                input_options(args.url)), None))
    elif args.config:
        cfg = _configured(args.config)
        for s in cfg.cameras:
            if s.enabled and s.kind == "rtsp":
                cam = make_camera(s, read_secret(s.password_file))
                targets.append((f"{s.name} main", cam.main, s.audio))
                if cam.detect is not cam.main:
                    targets.append((f"{s.name} detect", cam.detect, None))
    else:
        print("give a URL or --config FILE", file=sys.stderr)
        return 2
    failed = 0
    for label, stream, audio in targets:
        try:
            info = probe(stream, args.timeout)
        except ProbeError as exc:
            failed += 1
            print(f"{label}: FAILED: {exc.reason}  [{stream}]")
            continue
        note = "" if info.recordable else "  (not recordable: set H.264 or H.265)"
        failed += not info.recordable
        sound = "" if label.endswith(" detect") else f", {info.audio_words(audio)}"
        print(f"{label}: {info}{sound}{note}  [{stream}]")
    return 1 if failed else 0


def snapshot(args: argparse.Namespace) -> int:
    from drivers.cameras.factory import make_camera
    from drivers.cameras.snapshot import grab_jpeg
    from firmware.config import read_secret

    cfg = _configured(args.config)
    try:
        settings = cfg.camera(args.camera)
    except StopIteration:
        print(f"no camera {args.camera!r} in {args.config}", file=sys.stderr)
        return 2
    cam = make_camera(settings, read_secret(settings.password_file))
    if cam.needs_producer:
        cam.start()
    try:
        jpeg = grab_jpeg(cam.detect, args.timeout)
    finally:
        if cam.needs_producer:
            cam.stop()
    if jpeg is None:
        print(f"{args.camera}: no picture within {args.timeout:g} s [{cam.detect}]",
              file=sys.stderr)
        return 1
    with open(args.output, "wb") as fh:
        fh.write(jpeg)
    print(f"{args.output}: {len(jpeg)} bytes from {args.camera}")
    return 0
