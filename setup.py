"""Ronda: NVR firmware for neighbourhood watch posts (Raspberry Pi, Jetson)."""

import os
from pathlib import Path

from setuptools import find_packages, setup

# RONDA_WHEEL=node (image/build, scripts/install-jetson): the node's release, without what a
# node never runs: the Command Center service and its tools (`central`) and the development
# tools (`devtools`); `ronda cmd`, `watch`, `demo`, ... then say so (firmware/tools.py).
# Unset or "full": everything (a source checkout, a Command Center, CI).
WHEEL = os.environ.get("RONDA_WHEEL") or "full"
if WHEEL not in ("full", "node"):
    raise SystemExit(f"setup.py: RONDA_WHEEL={WHEEL!r}: expected node or full")
NOT_ON_A_NODE = ("central", "devtools")


def node_only(items: dict) -> dict:
    """`items` without the keys a node's wheel leaves out (all of them for a full one)."""
    return {k: v for k, v in items.items() if WHEEL == "full" or k not in NOT_ON_A_NODE}


setup(
    name="ronda",
    version="0.1.0",
    description="NVR firmware for RW watch posts: record, detect, report over MQTT, panic alarm",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(
        include=["firmware*", "drivers*", "recorder*", "inference*", "mqtt*", "support*",
                 "central*", "uplink*", "web*", "devtools*"],
        exclude=[f"{p}{s}" for p in NOT_ON_A_NODE for s in ("", ".*")] if WHEEL == "node" else (),
    ),
    package_data=node_only({"mqtt": ["schemas/*.json"], "firmware": ["data/*"],
                            "central": ["static/*", "static/vendor/*"], "web": ["static/*"]}),
    # a node's build of its own, so that files of a full build never end up in its wheel
    options={"build": {"build_base": "build/node"}} if WHEEL == "node" else {},
    install_requires=[
        "pydantic>=2.5,<3",
        "tomli>=2; python_version<'3.11'",
        "paho-mqtt>=2.1,<3",
        "ffmpeg-python==0.2.0",
        "cryptography>=41",
        "rfc8785>=0.1.4,<1",  # RFC 8785 JCS: the signed bytes of MQTT commands
        "gpiozero>=2.0,<3",
        "numpy>=1.23,<2",  # tflite-runtime 2.14 is built against NumPy 1.x
        "pillow>=10",
        "psutil>=5.9",
        "rich>=13",
        "tomli-w>=1.0",
        "tomlkit>=0.12",  # firstboot edits ronda.toml keeping the technician's comments
    ],
    extras_require=node_only({
        # On a Raspberry Pi. picamera2 needs python3-libcamera from Raspberry Pi OS
        # (create the venv with --system-site-packages); lgpio is the Pi 5 pin factory.
        "pi": ["picamera2>=0.3.17", "lgpio>=0.2", "systemd-python>=234"],
        # GPIO alone (lgpio: the pin factory of the Pi 5 and the Pi 4), e.g. on Debian's images.
        "gpio": ["lgpio>=0.2"],
        "jetson": ["Jetson.GPIO>=2.1", "systemd-python>=234"],
        "systemd": ["systemd-python>=234"],
        "detect": [
            "tflite-runtime==2.14.0; python_version<'3.12'",
            "opencv-python-headless>=4.8,<4.12",
        ],
        # The Command Center service (`ronda-central`, docs/central.md), on a city server.
        "central": [
            "starlette>=0.37",
            "uvicorn>=0.29",
            "argon2-cffi>=23.1",
            "psycopg[binary]>=3.1",
            "jsonschema>=4.20",
        ],
        # The node's web page (docs/web.md).
        "web": ["starlette>=0.37", "uvicorn>=0.29", "wsproto>=1.2", "argon2-cffi>=23.1"],
        "dev": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "ruff>=0.6",
            "jsonschema>=4.20",
            "scikit-image>=0.22",
            "selenium>=4.15",  # browser tests drive Debian's chromium through chromium-driver
            "wheel>=0.41",  # the node-wheel test builds one offline (--no-build-isolation)
            # the web extra, so that `make test` runs the web tests
            "starlette>=0.37", "uvicorn>=0.29", "wsproto>=1.2", "argon2-cffi>=23.1",
        ],
    }),
    entry_points={"console_scripts": ["ronda=firmware.cli:main"]
                  + (["ronda-central=central.cli:main"] if WHEEL == "full" else [])},
)
