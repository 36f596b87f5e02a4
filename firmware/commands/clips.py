"""`ronda clips list` and `ronda clips export`: what footage the node holds, and a clip
of it as one MP4 (stream copy, no re-encoding)."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path

from firmware import config
from firmware.commands import formatter
from recorder.export import ExportError, ExportPlan, export, plan
from recorder.index import Index, IndexError_

# Exit codes of `ronda clips export` (also in its --help).
EXIT_OK = 0  # exported, no footage missing
EXIT_ERROR = 1  # the store cannot be read, or ffmpeg failed
EXIT_USAGE = 2  # bad arguments
EXIT_PARTIAL = 3  # exported, but part of the range has no footage (gaps listed)
EXIT_NO_FOOTAGE = 4  # nothing recorded in the range: no file written
EXIT_REFUSED = 5  # output exists (no --force), or would land outside the path asked for

EXPORT_HELP = """\
Join the recordings of one camera over a time range (or of a protected event) into one
MP4. Segments are copied, not re-encoded, so the clip starts at the keyframe that begins
the segment holding FROM (up to one segment early) and ends with the segment holding TO.
Holes in the footage (camera or disk down) are listed, and the clip simply skips them.

Times: ISO 8601 in the node's local time unless they carry an offset
(2026-11-28T21:30, 2026-11-28T14:30:00Z), or Unix seconds.

exit codes:
  0  exported, no footage missing
  1  the store cannot be read, or ffmpeg failed
  2  bad arguments
  3  exported, but part of the range has no footage (the gaps are listed)
  4  no footage at all in the range: nothing written
  5  refused: the output exists (use --force), or would land outside the path asked
     for (a symlink, or inside the recordings store)

examples:
  ronda clips export --camera gang-utara --from 2026-11-28T21:30 --to 2026-11-28T21:45 \\
      -o /media/usb/gang-utara-2130.mp4
  ronda clips export --event 4f1c2a... -o /media/usb/     one file per camera of the event
"""

LIST_HELP = """\
List what the recordings store holds: per camera, the continuous spans of footage (a
new span starts after a hole longer than a segment), and the protected event clips.

examples:
  ronda clips list
  ronda clips list --camera gang-utara --from 2026-11-28T20:00
  ronda clips list --store /srv/ronda/recordings     without a config file
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("clips", formatter_class=formatter,
                       help="list recorded footage, export clips as MP4",
                       description="What the node recorded, and clips of it.\n\n"
                                   "examples:\n  ronda clips list\n"
                                   "  ronda clips export --camera gate --from 2026-11-28T21:30 "
                                   "--to 2026-11-28T21:45 -o gate.mp4")
    clips = p.add_subparsers(dest="clips_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), EXIT_USAGE)[1])

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default="/etc/ronda/ronda.toml",
                        help="config file, for [recorder] path (default: /etc/ronda/ronda.toml)")
    common.add_argument("--store", type=Path,
                        help="recordings directory; overrides the config's [recorder] path")

    lp = clips.add_parser("list", parents=[common], formatter_class=formatter,
                          help="list footage spans and protected clips", description=LIST_HELP)
    lp.add_argument("--camera", help="only this camera")
    lp.add_argument("--from", dest="start", type=parse_time, help="from this time")
    lp.add_argument("--to", dest="end", type=parse_time, help="up to this time")
    lp.set_defaults(func=list_clips)

    ep = clips.add_parser("export", parents=[common], formatter_class=formatter,
                          help="export a time range or an event as MP4",
                          description=EXPORT_HELP)
    what = ep.add_mutually_exclusive_group(required=True)
    what.add_argument("--camera", help="camera to export (with --from and --to)")
    what.add_argument("--event", help="protected event id: its range, on its cameras")
    ep.add_argument("--from", dest="start", type=parse_time, help="start of the range")
    ep.add_argument("--to", dest="end", type=parse_time, help="end of the range")
    ep.add_argument("-o", "--output", type=Path, required=True,
                    help="output .mp4 file; with --event, a directory (or a .mp4 file when "
                         "the event has one camera)")
    ep.add_argument("--force", action="store_true", help="overwrite an existing output")
    ep.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    ep.set_defaults(func=export_clips)


# -- helpers -----------------------------------------------------------------------------
def parse_time(text: str) -> float:
    """ISO 8601 (local time unless it has an offset or Z) or Unix seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (use 2026-11-28T21:30, ...Z, or Unix seconds)") from None
    return dt.timestamp()  # naive = local time


def show(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S%z")


def store_path(args: argparse.Namespace) -> Path | None:
    if args.store is not None:
        return args.store
    try:
        return config.load(args.config).recorder.path
    except config.ConfigError as exc:
        print(f"{exc}\n(give the recordings directory with --store)", file=sys.stderr)
        return None


def open_index(root: Path) -> Index | None:
    """The store's index, read-only, or None (the reason printed)."""
    db = root / Index.FILENAME
    if not db.is_file():
        print(f"no recordings index at {db}", file=sys.stderr)
        return None
    try:
        return Index(db, readonly=True)
    except (IndexError_, sqlite3.Error) as exc:
        print(f"cannot read {db}: {exc}", file=sys.stderr)
        return None


def check_output(out: Path, root: Path, force: bool) -> str | None:
    """Why `out` must not be written, or None. The clip must land exactly where asked:
    not through a symlink, not into the recordings store, not over a file (unless
    forced), and into a directory that exists."""
    if out.is_symlink():
        return f"{out} is a symlink: the clip would be written elsewhere"
    parent = out.parent.resolve()
    if not parent.is_dir():
        return f"directory {out.parent} does not exist"
    target = parent / out.name
    if target.resolve() != target:
        return f"{out} resolves outside {parent}"
    store = root.resolve()
    if target == store or store in target.parents:
        return f"{out} is inside the recordings store {store}"
    if target.is_dir():
        return f"{out} is a directory"
    if target.exists() and not force:
        return f"{out} exists (use --force to overwrite)"
    return None


# -- list --------------------------------------------------------------------------------
def list_clips(args: argparse.Namespace) -> int:
    root = store_path(args)
    index = open_index(root) if root is not None else None
    if index is None:
        return EXIT_ERROR
    try:
        segments = index.segments(args.camera, args.start, args.end)
        clips = index.clips()
    finally:
        index.close()
    if not segments:
        print("no footage" + (f" of {args.camera}" if args.camera else "") + " in that range")
    by_camera: dict[str, list] = {}
    for seg in segments:
        by_camera.setdefault(seg.camera, []).append(seg)
    for camera, segs in sorted(by_camera.items()):
        total = sum(s.duration for s in segs)
        print(f"{camera}: {len(segs)} segments, {total / 3600:.2f} h, "
              f"{sum(s.bytes for s in segs) / 2**20:.1f} MiB")
        span_start, span_end, count = segs[0].start, segs[0].end, 0
        tolerance = max(1.5, 2 * max(s.duration for s in segs))
        for seg in [*segs, None]:
            if seg is not None and seg.start - span_end <= tolerance:
                span_end, count = max(span_end, seg.end), count + 1
                continue
            print(f"  {show(span_start)} -> {show(span_end)}  "
                  f"({(span_end - span_start) / 60:.1f} min, {count} segments)")
            if seg is not None:
                span_start, span_end, count = seg.start, seg.end, 1
    if clips:
        print("protected clips:")
        for clip in clips:
            cams = ",".join(clip.cameras) or "all cameras"
            print(f"  {clip.event_id}  {show(clip.start)} -> {show(clip.end)}  {cams}")
    return EXIT_OK


# -- export ------------------------------------------------------------------------------
def export_clips(args: argparse.Namespace) -> int:
    if args.camera and (args.start is None or args.end is None):
        print("--camera needs --from and --to", file=sys.stderr)
        return EXIT_USAGE
    if args.start is not None and args.end is not None and args.end <= args.start:
        print("--to must be after --from", file=sys.stderr)
        return EXIT_USAGE
    root = store_path(args)
    index = open_index(root) if root is not None else None
    if index is None:
        return EXIT_ERROR
    try:
        if args.event:
            clip = index.clip(args.event)
            if clip is None:
                print(f"no protected event {args.event!r} (see `ronda clips list`)",
                      file=sys.stderr)
                return EXIT_NO_FOOTAGE
            cameras = list(clip.cameras) or index.cameras()
            start, end = clip.start, min(clip.end, time.time())
            plans = [plan(index, cam, start, end) for cam in cameras]
        else:
            plans = [plan(index, args.camera, args.start, args.end)]
    finally:
        index.close()

    targets = _targets(args, plans)
    if isinstance(targets, str):
        print(targets, file=sys.stderr)
        return EXIT_REFUSED
    for target in targets.values():
        why = check_output(target, root, args.force)
        if why:
            print(f"refused: {why}", file=sys.stderr)
            return EXIT_REFUSED

    code = EXIT_OK
    wrote = 0
    for p in plans:
        for a, b in p.gaps:
            print(f"{p.camera}: no footage {show(a)} -> {show(b)} ({b - a:.0f} s)")
        if not p.segments:
            print(f"{p.camera}: no footage at all from {show(p.start)} to {show(p.end)}: "
                  "nothing written")
            continue
        try:
            out = _export_one(root, p, targets[p.camera], args.quiet)
        except ExportError as exc:
            print(f"{p.camera}: export failed: {exc}", file=sys.stderr)
            return EXIT_ERROR
        wrote += 1
        print(f"{p.camera}: wrote {out} ({p.duration:.1f} s, {len(p.segments)} segments)")
        if p.gaps:
            code = EXIT_PARTIAL
    if wrote == 0:
        return EXIT_NO_FOOTAGE
    if wrote < len(plans):
        return EXIT_PARTIAL
    return code


def _targets(args: argparse.Namespace, plans: list[ExportPlan]) -> dict[str, Path] | str:
    out: Path = args.output
    if len(plans) == 1 and (out.suffix.lower() == ".mp4" or not args.event):
        return {plans[0].camera: out}
    if out.suffix.lower() == ".mp4":
        return (f"event {args.event} has {len(plans)} cameras: give a directory as -o, "
                "one file per camera is written in it")
    if not out.is_dir():
        return f"{out} is not a directory"
    return {p.camera: out / f"{args.event}-{p.camera}.mp4" for p in plans}


def _export_one(root: Path, p: ExportPlan, target: Path, quiet: bool) -> Path:
    if quiet:
        return export(root, p, target)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeRemainingColumn(), console=Console(stderr=True)) as bar:
        task = bar.add_task(f"{p.camera} -> {target.name}", total=max(p.duration, 0.1))
        return export(root, p, target, lambda s: bar.update(task, completed=min(s, p.duration)))
