"""NVIDIA Jetson CSI cameras through GStreamer (``gst-launch-1.0``), the producer.

On a Jetson the ISP and encoder are reached through NVIDIA's GStreamer elements, not
V4L2: ``nvarguscamerasrc`` (the Argus camera stack) gives frames in NVMM (GPU) memory,
``nvv4l2h264enc`` encodes them in hardware, ``nvvidconv`` scales and converts them out
of NVMM for the detector. One pipeline, teed:

    nvarguscamerasrc sensor-id=N ! video/x-raw(memory:NVMM),... ! tee name=t
      t. ! queue ! nvv4l2h264enc ... ! h264parse ! mpegtsmux ! tcpclientsink (main relay)
      t. ! queue ! nvvidconv ! video/x-raw,format=I420,WxH ! videorate ! ... ! tcpclientsink
                                                                        (detect relay)

The element names are parameters (`JetsonElements`), so that the same pipeline can be
built, and run, with software elements on a machine without a Jetson (the tests do).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from drivers.cameras.producer import ProducerCamera


@dataclass(frozen=True)
class JetsonElements:
    """The hardware-specific parts of the pipeline."""

    source: str = "nvarguscamerasrc sensor-id={sensor}"
    source_caps: str = ("video/x-raw(memory:NVMM),width={width},height={height},"
                        "framerate={fps}/1,format=NV12")
    encoder: str = ("nvv4l2h264enc bitrate={bitrate} iframeinterval={fps} idrinterval={fps} "
                    "insert-sps-pps=true control-rate=1")
    converter: str = "nvvidconv"


#: The same pipeline with software elements (any machine with GStreamer's base/good/ugly).
SOFTWARE_ELEMENTS = JetsonElements(
    source="videotestsrc is-live=true pattern=smpte",
    source_caps="video/x-raw,width={width},height={height},framerate={fps}/1,format=I420",
    encoder=("x264enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} "
             "bitrate={bitrate_kbps} byte-stream=true"),
    converter="videoconvert ! videoscale",
)


class JetsonCamera(ProducerCamera):
    """A CSI sensor on a Jetson (`sensor` is nvarguscamerasrc's sensor-id)."""

    kind = "jetson"

    def __init__(self, name: str, *, sensor: int = 0, bitrate_kbps: int = 4000,
                 elements: JetsonElements | None = None, gst_launch: str = "gst-launch-1.0",
                 **kwargs) -> None:
        self.sensor = sensor
        self.bitrate_kbps = bitrate_kbps
        self.elements = elements or JetsonElements()
        self.gst_launch = gst_launch
        super().__init__(name, **kwargs)

    @classmethod
    def from_settings(cls, s) -> JetsonCamera:  # s: CameraSettings
        return cls(s.name, sensor=s.sensor, bitrate_kbps=s.bitrate_kbps, width=s.width,
                   height=s.height, fps=s.fps, detect_size=(s.detect_width, s.detect_height),
                   detect_fps=s.detect_fps, timeout_s=s.timeout_s,
                   backoff_cap_s=s.backoff_cap_s)

    def with_elements(self, elements: JetsonElements) -> JetsonCamera:
        """This camera's pipeline built from other elements (tests, other boards)."""
        self.elements = replace(elements)
        return self

    def pipeline(self) -> str:
        """The gst-launch pipeline description."""
        values = {"sensor": self.sensor, "width": self.width, "height": self.height,
                  "fps": self.fps, "bitrate": self.bitrate_kbps * 1000,
                  "bitrate_kbps": self.bitrate_kbps}
        e = {k: v.format(**values) for k, v in vars(self.elements).items()}
        dw, dh = self.detect_size
        main_port, detect_port = self.main_relay.ingest_port, self.detect_relay.ingest_port
        return (
            f"{e['source']} ! {e['source_caps']} ! tee name=t "
            f"t. ! queue max-size-buffers=30 leaky=downstream ! {e['encoder']} ! "
            "h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,"
            "alignment=au ! mpegtsmux alignment=7 ! "
            f"tcpclientsink host=127.0.0.1 port={main_port} sync=false "
            f"t. ! queue max-size-buffers=4 leaky=downstream ! {e['converter']} ! "
            f"video/x-raw,format=I420,width={dw},height={dh} ! videorate drop-only=true ! "
            f"video/x-raw,framerate={self.detect_fps}/1 ! "
            f"tcpclientsink host=127.0.0.1 port={detect_port} sync=false"
        )

    def producer_args(self) -> list[str]:
        # -e: send EOS on SIGINT/SIGTERM so the muxer closes cleanly
        return [self.gst_launch, "-q", "-e", *self.pipeline().split()]
