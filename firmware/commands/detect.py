"""`ronda detect`: try the detector on a photo, a clip or a camera, with the node's settings."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from firmware.commands import formatter

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect", formatter_class=formatter,
        help="run person detection on a photo, a video file or a camera URL",
        description=(
            "Run the node's detector on a photo (prints every detection with its score and\n"
            "writes the photo with boxes drawn) or on a video file / stream URL (runs the\n"
            "whole pipeline: motion, crops, tracks, zones; prints each alert and a summary).\n"
            "Use it to choose min_score and zones: a real person should score well above\n"
            "min_score, and nothing else should reach it.\n\n"
            "examples:\n"
            "  ronda detect --model /usr/share/ronda/models/pose_detection.tflite gate.jpg\n"
            "  ronda detect --config /etc/ronda/ronda.toml --camera gang-utara \\\n"
            "      rtsp://192.168.1.20/sub --seconds 60 --snapshots /tmp/alerts"),
    )
    p.add_argument("source", help="a photo (.jpg/.png), a video file or an rtsp:// URL")
    p.add_argument("--config", help="take [detect] settings (model, zones, masks) from this file")
    p.add_argument("--camera", default="test",
                   help="camera name whose zones and masks apply (with --config)")
    p.add_argument("--model", type=Path, help="a .tflite model (overrides the config)")
    p.add_argument("--min-score", type=float, help="alert threshold (overrides the config)")
    p.add_argument("--seconds", type=float, default=30.0,
                   help="how long to watch a clip or stream (default: 30)")
    p.add_argument("--out", type=Path, help="photo mode: where to write the annotated JPEG")
    p.add_argument("--snapshots", type=Path,
                   help="clip mode: directory where alert snapshots are written")
    p.set_defaults(func=detect)


def _settings(args: argparse.Namespace):
    from firmware import config
    from inference.settings import DetectSettings

    settings = config.load(args.config).detect if args.config else DetectSettings()
    updates = {}
    if args.model:
        updates["model"] = args.model
    if args.min_score is not None:
        updates["min_score"] = args.min_score
    settings = settings.model_copy(update=updates)
    if settings.model is None:
        raise SystemExit("no model: pass --model FILE or a --config with [detect] model")
    return settings


def detect(args: argparse.Namespace) -> int:
    from inference.pipeline import single_threaded_opencv

    single_threaded_opencv()
    settings = _settings(args)
    if Path(args.source).suffix.lower() in IMAGE_SUFFIXES:
        return _photo(args, settings)
    return _stream(args, settings)


def _photo(args: argparse.Namespace, settings) -> int:
    import cv2

    from inference.pipeline import encode_jpeg

    bgr = cv2.imread(args.source, cv2.IMREAD_COLOR)
    if bgr is None:
        print(f"{args.source}: cannot read the image", file=sys.stderr)
        return 1
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    det = _detector(settings, min_score=0.1)
    t0 = time.perf_counter()
    found = det.detect(rgb)
    ms = (time.perf_counter() - t0) * 1000
    print(f"{args.source}: {len(found)} detection(s) >= 0.10 in {ms:.0f} ms "
          f"({det.model_type} model); alert threshold {settings.min_score:.2f}")
    for d in found:
        mark = "ALERT" if d.score >= settings.min_score and d.label in settings.objects else ""
        print(f"  {d.label:<8} {d.score:.3f}  box {', '.join(f'{v:.2f}' for v in d.box)}  {mark}")
    if args.out and found:
        best = found[0]
        args.out.write_bytes(encode_jpeg(rgb, best.box, f"{best.label} {best.score:.2f}"))
        print(f"wrote {args.out}")
    return 0


def _stream(args: argparse.Namespace, settings) -> int:
    from drivers.cameras.base import StreamInput
    from inference.frames import FrameReader
    from inference.pipeline import CameraPipeline, TrackReport

    det = _detector(settings, min_score=min(0.4, settings.min_score))
    if args.snapshots:
        args.snapshots.mkdir(parents=True, exist_ok=True)

    def report(r: TrackReport) -> None:
        print(f"{time.strftime('%H:%M:%S')} {r.phase:<6} {r.label} score {r.score:.2f} "
              f"zones {','.join(r.zones) or '-'} track {r.track_id[:8]}", flush=True)
        if args.snapshots and r.snapshot:
            (args.snapshots / f"{r.track_id[:8]}-{r.phase}.jpg").write_bytes(r.snapshot)

    def tamper(r) -> None:
        print(f"{time.strftime('%H:%M:%S')} tamper {r.kind} {r.phase}", flush=True)

    pipe = CameraPipeline(args.camera, settings.for_camera(args.camera), det, settings.width,
                          settings.height, on_track=report, on_tamper=tamper)
    live = "://" in args.source
    reader = FrameReader(args.camera, StreamInput(args.source), settings.width,
                         settings.height, fps=settings.fps, hwaccel=settings.hwaccel,
                         drop_when_full=live, stream_clock=not live, restart_delay_s=2.0)
    reader.start()
    deadline = time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline:
            frame = reader.pool.get(timeout=0.5)
            if frame is None:
                if not live and reader.streams_ended:
                    break
                continue
            pipe.process(frame.yuv, frame.ts)
            reader.pool.release(frame)
    finally:
        reader.stop()
        pipe.finish()
    stats = pipe.stats.as_dict()
    print(f"frames {stats['frames_in']}, with motion {stats['motion_frames']}, detector runs "
          f"{stats['detector_runs']}, inference p50 {stats['inference_ms_p50']} ms, "
          f"tracks {stats['tracks_total']}, alerts {stats['alerts']}")
    return 0


def _detector(settings, min_score: float):
    """The detector of `[detect] type`, or exit with one line when the model is not usable."""
    from inference import detectors

    try:
        det = detectors.create(settings)
    except (ValueError, RuntimeError, OSError) as exc:
        raise SystemExit(f"{settings.model}: not a usable {settings.type} model "
                         f"({str(exc).strip()})") from None
    det.min_score = min_score
    return det
