"""A synthetic street scene for the demo, tests and benches: a still background with a
real photo of a person (scikit-image's astronaut, NASA, public domain) walking across it.

Rendered by ffmpeg into an H.264 file with a keyframe every second, so that it can be
served as an RTSP camera or fed to the recorder and the detector as it is.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path


def person_png(path: Path) -> Path:
    """Write the person photo (head and shoulders crop of `astronaut()`) as PNG."""
    from PIL import Image
    from skimage import data  # dev dependency: only the demo and tests need it

    Image.fromarray(data.astronaut()).save(path)
    return path


def render_scene(
    out: Path,
    *,
    seconds: float = 20.0,
    size: tuple[int, int] = (1280, 720),
    fps: int = 15,
    walk: tuple[float, float] | None = (3.0, 15.0),
    person_height: float = 0.5,
) -> Path:
    """Render the scene to `out` (.mp4 or .mkv). The person walks left to right during
    `walk` = (start_s, end_s) and is absent otherwise; `walk=None` renders no person."""
    width, height = size
    background = (
        f"color=c=0x4a5560:s={width}x{height}:r={fps}:d={seconds},"
        f"drawbox=x=0:y={int(height * 0.72)}:w={width}:h={height}:color=0x6b6b5e:t=fill,"
        f"drawbox=x={int(width * 0.08)}:y={int(height * 0.18)}:w={int(width * 0.22)}:"
        f"h={int(height * 0.54)}:color=0x8a7a66:t=fill,"
        f"drawbox=x={int(width * 0.66)}:y={int(height * 0.1)}:w={int(width * 0.26)}:"
        f"h={int(height * 0.62)}:color=0x7d8a90:t=fill"
    )
    args = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", background]
    with tempfile.TemporaryDirectory() as tmp:
        if walk is None:
            graph = "[0:v]format=yuv420p[v]"
        else:
            start, end = walk
            ph = int(height * person_height) // 2 * 2
            photo = person_png(Path(tmp) / "p.png")
            args += ["-loop", "1", "-framerate", str(fps), "-i", str(photo)]
            x = f"-w+(W+w)*(t-{start})/({end}-{start})"
            graph = (
                f"[1:v]scale=-2:{ph}[p];"
                f"[0:v][p]overlay=x='{x}':y=H*0.72-h*0.8:shortest=1:"
                f"enable='between(t,{start},{end})',format=yuv420p[v]"
            )
        args += [
            "-filter_complex", graph, "-map", "[v]", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-g", str(fps), "-keyint_min", str(fps), "-sc_threshold", "0",
            "-pix_fmt", "yuv420p", str(out),
        ]
        subprocess.run(args, check=True)
    return out
