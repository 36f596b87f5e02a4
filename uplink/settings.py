"""`[uplink]` config: where live video goes, the bandwidth cap, the upload queue."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The longest a `live` command may ask for (renewable by sending it again).
MAX_TTL_S = 600
MEDIA_SCHEMES = ("rtmp", "rtmps", "rtsp", "rtsps", "srt")


class UplinkSettings(BaseModel):
    """Live push on request, footage upload on request, shared bandwidth cap."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    media_url: str | None = Field(
        default=None,
        description="Where `live` pushes: a template with {node}, {camera}, {stream} and "
                    "optionally {secret} (the first line of media_secret_file), e.g. "
                    "rtmp://cc.example/live/{node}-{camera}?key={secret} or "
                    "rtsp://cc.example:8554/ronda/{node}/{camera}. Unset: `live` is refused.")
    media_secret_file: Path | None = Field(default=None, json_schema_extra={"secret": True})
    max_uplink_kbps: int = Field(
        default=0, ge=0, le=10_000_000,
        description="One cap for everything the uplink sends (0: none). Live goes first; "
                    "uploads get what live leaves.")
    main_kbps: int = Field(default=4000, gt=0, le=200_000,
                           description="Bitrate assumed for a main stream until measured.")
    sub_kbps: int = Field(default=800, gt=0, le=200_000,
                          description="Bitrate assumed for a substream until measured.")
    allow_lan: bool = Field(
        default=False,
        description="Allow upload and media URLs that resolve to this node, loopback or a "
                    "private/link-local network (off: such a URL is refused).")
    queue_max: int = Field(default=8, ge=1, le=100,
                           description="Fetches waiting behind the running one.")
    max_fetch_s: float = Field(default=3600.0, gt=0, le=86400,
                               description="Longest range one `fetch` may ask for.")
    upload_attempts: int = Field(default=5, ge=1, le=50,
                                 description="Tries per upload before it is reported failed.")
    upload_stall_s: float = Field(default=30.0, ge=1, le=600,
                                  description="No byte accepted for this long: the try fails.")
    retry_min_s: float = Field(default=2.0, gt=0, le=600)
    retry_max_s: float = Field(default=120.0, gt=0, le=3600)

    wall: list[str] = Field(
        default_factory=list,
        description="Cameras on the always-on video wall: their substream is pushed to "
                    "media_url (stream 'sub') continuously, reconnecting with backoff.")
    wall_daily_mb: float = Field(
        default=0.0, ge=0,
        description="Per wall camera and local day: MB sent before its push stops until "
                    "midnight (0: no budget). 1 Mbit/s for 24 h is about 10,800 MB.")

    alarm_clip_url: str | None = Field(
        default=None,
        description="Upload every alarm's clip here (HTTP PUT), one file per camera: a "
                    "template with {node}, {camera}, {alarm_id}, {kind}, e.g. "
                    "https://cc.example/clips/{node}/{alarm_id}-{camera}.mp4. Unset: off.")
    alarm_clip_token_file: Path | None = Field(
        default=None, json_schema_extra={"secret": True},
        description="A bearer token (first line) sent with alarm clip uploads.")
    alarm_clip_kinds: list[str] = Field(default_factory=lambda: ["panic", "fire"],
                                        description="Alarm kinds whose clips are uploaded.")
    alarm_clip_post_s: float = Field(
        default=30.0, ge=0, le=600,
        description="Seconds after the alarm in the clip (the pre-roll is [alarm] pre_s).")

    @field_validator("alarm_clip_url")
    @classmethod
    def _clip_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("alarm_clip_url must start with http:// or https://")
        try:
            url.format(node="n", camera="c", alarm_id="a", kind="panic")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"alarm_clip_url may only use {{node}}, {{camera}}, {{alarm_id}}, "
                             f"{{kind}}: {exc}") from None
        return url

    @field_validator("media_url")
    @classmethod
    def _media_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme not in MEDIA_SCHEMES:
            raise ValueError(f"media_url must start with one of "
                             f"{', '.join(s + '://' for s in MEDIA_SCHEMES)}")
        try:
            url.format(node="n", camera="c", stream="main", secret="s")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"media_url may only use {{node}}, {{camera}}, {{stream}}, "
                             f"{{secret}}: {exc}") from None
        return url
