"""Ronda: NVR firmware for neighbourhood watch posts (Raspberry Pi, Jetson)."""

from pathlib import Path

from setuptools import find_packages, setup

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
                 "central*", "uplink*", "web*", "devtools*"]
    ),
    package_data={"mqtt": ["schemas/*.json"], "firmware": ["data/*"],
                  "central": ["static/*", "static/vendor/*"], "web": ["static/*"]},
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
    extras_require={
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
            # the web extra, so that `make test` runs the web tests
            "starlette>=0.37", "uvicorn>=0.29", "wsproto>=1.2", "argon2-cffi>=23.1",
        ],
    },
    entry_points={"console_scripts": ["ronda=firmware.cli:main",
                                      "ronda-central=central.cli:main"]},
)
