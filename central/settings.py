"""`central.toml`: the Command Center service's one config file (pydantic, exit 78 on error).

Example (every key has a default except the agencies' own)::

    [database]
    url = "postgresql://ronda@127.0.0.1/ronda"     # or sqlite:///var/lib/ronda-central/db

    [mqtt]
    broker = "mqtts://broker.kota.go.id:8883"
    client_id = "ronda-central-ingest-1"           # one per worker, fixed: it names the session

    [web]
    port = 8080
    tiles_url = ""                                 # "" = the plain layout (no map tiles)

    [commands]
    key_file = "/etc/ronda-central/command.pem"    # mode 0600, from `ronda keys generate`

    [footage]
    dir = "/var/lib/ronda-central/footage"         # clips the operators asked nodes for
    public_url = "https://cc.kota.go.id"           # the console as the nodes reach it

    [[agencies]]
    id = "damkar"
    name = "Damkar (fire brigade)"
    phone = "113"
    kinds = ["fire"]
    webhook_url = "https://damkar.example/ronda"
    webhook_secret_file = "/etc/ronda-central/damkar.secret"
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

EX_CONFIG = 78


class DatabaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(default="sqlite:///var/lib/ronda-central/central.sqlite3",
                     pattern=r"^(sqlite:///|postgres(ql)?://)")


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    broker: str = "mqtt://127.0.0.1:1883"
    prefix: str = "ronda/v1"
    client_id: str = Field(default="ronda-central-ingest-1", min_length=1, max_length=64)
    group: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$",
                       description="shared-subscription group of several workers; '' (one "
                       "worker) subscribes without $share, which survives a Mosquitto restart")
    session_expiry_s: int = Field(default=7 * 86400, ge=60)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    tiles_url: str = Field(default="", description="{z}/{x}/{y} tile URL; '' = plain layout")
    tiles_attribution: str = ""
    offline_after_s: float = Field(default=300, gt=0)
    silent_after_s: float = Field(default=86400, gt=0)
    session_hours: float = Field(default=12, gt=0)
    secure_cookies: bool = Field(default=False, description="set behind HTTPS")
    login_failures: int = Field(default=5, ge=1,
                                description="failed sign-ins from one address before 429")
    login_window_s: float = Field(default=300, gt=0, description="...within this many seconds")


class FootageSettings(BaseModel):
    """Footage that operators request from nodes (central/footage.py)."""
    model_config = ConfigDict(extra="forbid")
    dir: Path = Field(default=Path("/var/lib/ronda-central/footage"),
                      description="where uploaded clips are kept")
    max_mb: float = Field(default=2048, gt=0, description="refuse an upload larger than this")
    public_url: str = Field(default="", pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$",
                            description="the console's URL as the nodes reach it; '' = the"
                                        " URL the operator's browser used")
    token_hours: float = Field(default=24, gt=0, description="how long an upload URL is valid")


class LiveSettings(BaseModel):
    """Live video on the node page (docs/central.md, "Live video")."""
    model_config = ConfigDict(extra="forbid")
    hls_url: str = Field(default="", pattern=r"^(https?://\S*\{node\}\S*)?$",
                         description="the media server's HLS playlist of a camera, a template"
                                     " with {node} and {camera}, e.g. http://media.kota.go.id"
                                     "/hls/{node}-{camera}.m3u8; '' = no live video")
    stream: str = Field(default="main", pattern=r"^(main|sub)$",
                        description="which stream of the camera the node pushes")
    ttl_s: int = Field(default=120, ge=30, le=600,
                       description="the `live` command's ttl; the page renews it at half")


class CommandSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key_file: Path | None = Field(default=None, description="Ed25519 PKCS#8 PEM, mode 0600")
    reply_timeout_s: float = Field(default=8.0, gt=0)


class Agency(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9_-]+$")
    name: str
    phone: str = ""
    kinds: list[str] = Field(default_factory=list,
                             description="alarm kinds this agency sees (panic, fire, medical)")
    webhook_url: str = ""
    webhook_secret_file: Path | None = None


class CentralSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    footage: FootageSettings = Field(default_factory=FootageSettings)
    live: LiveSettings = Field(default_factory=LiveSettings)
    agencies: list[Agency] = Field(default_factory=lambda: list(DEFAULT_AGENCIES))

    def agency(self, agency_id: str) -> Agency | None:
        return next((a for a in self.agencies if a.id == agency_id), None)


DEFAULT_AGENCIES = (
    Agency(id="psc119", name="PSC 119 (ambulance)", phone="119", kinds=["panic", "medical"]),
    Agency(id="damkar", name="Damkar (fire brigade)", phone="113", kinds=["fire"]),
    Agency(id="polisi", name="Polisi (police)", phone="110", kinds=["panic", "intrusion"]),
)


class ConfigError(ValueError):
    """The file is unreadable or a field is wrong; the message names every bad field."""


def load(path: Path | None) -> CentralSettings:
    """Settings from a TOML file (None: every default)."""
    if path is None:
        return CentralSettings()
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return CentralSettings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                 for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None


def read_secret(path: Path) -> str:
    """The first line of a secret file ("" for an empty file)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return lines[0].strip() if lines else ""
