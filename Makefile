# Ronda developer entry points. Every target sets up what it needs, so on a fresh
# Debian 12 machine `make demo` and `make test` are the only commands to know.
# Second runs are quick: each set-up step leaves a stamp and is skipped when done.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMPS := .cache/stamps
MODELS := .cache/models

# Debian packages: ffmpeg and mosquitto are run for real by the node and its tests;
# libsystemd-dev/pkg-config build systemd-python; libcap-dev builds picamera2's prctl;
# GStreamer's RTSP server (through Debian's python3-gi) serves the test camera (-bad: h265parse);
# chromium + chromium-driver: the web page's and the console's tests drive a real headless browser.
APT_PACKAGES := ffmpeg mosquitto mosquitto-clients libsystemd-dev pkg-config libcap-dev \
	python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly systemd e2fsprogs dosfstools \
	util-linux fdisk xz-utils debootstrap kmod iproute2 mtools gstreamer1.0-plugins-bad nodejs
# The Command Center service (central/): its tests run a real PostgreSQL and drive the
# console in headless Chromium through chromedriver.
APT_PACKAGES += postgresql chromium chromium-driver
# The video uplink (uplink/): its tests push to a real nginx-rtmp and PUT to nginx WebDAV.
APT_PACKAGES += nginx-light libnginx-mod-rtmp curl

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all setup demo test bench lint clean demo-central
all: test

$(STAMPS)/apt: Makefile
	@mkdir -p $(STAMPS)
	@if ! dpkg -s $(APT_PACKAGES) >/dev/null 2>&1; then \
		echo "== installing Debian packages"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	fi
	@touch $@

$(STAMPS)/venv: setup.py $(STAMPS)/apt
	@echo "== setting up $(VENV)"
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[detect,dev,systemd,central]'
	@touch $@

$(STAMPS)/models: scripts/fetch-test-models $(STAMPS)/venv
	@$(PY) scripts/fetch-test-models $(MODELS)
	@touch $@

setup: $(STAMPS)/models

demo: setup
	$(VENV)/bin/ronda demo

# The Command Center console: broker, console, two real nodes, simulated posts.
demo-central: setup
	$(VENV)/bin/ronda-central demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

# The fast lane: units only (no broker, no ffmpeg, no child daemon; tests/conftest.py marks
# the others `integration`), well under 2 minutes. `make test` stays what CI runs.
.PHONY: test-fast
test-fast: setup
	@start=$$(date +%s); RONDA_FAST_LANE=1 $(VENV)/bin/pytest -q -m "not integration"; rc=$$?; \
	echo "== fast lane: $$(( $$(date +%s) - start )) s wall"; exit $$rc

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf .cache build *.egg-info .pytest_cache

# ---- the SD image (docs/image.md) ------------------------------------------------------------
# Building and boot-testing the arm64 Raspberry Pi image on an x86 machine: qemu-user-static
# (+ binfmt_misc) runs the image's programs, qemu-system-aarch64 boots it (tests/image).
IMAGE_APT_PACKAGES := qemu-user-static binfmt-support qemu-system-arm socat debootstrap mtools \
	dosfstools e2fsprogs fdisk xz-utils
IMAGE_MODEL ?= $(MODELS)/pose_detection.tflite
IMAGE_XZ ?= 6
# The slow emulated steps are cached here, the same place tests/image/test_image_pi.py looks.
IMAGE_CACHE ?= $(HOME)/.cache/ronda-tests/image

$(STAMPS)/apt-image: Makefile
	@mkdir -p $(STAMPS)
	@if ! dpkg -s $(IMAGE_APT_PACKAGES) >/dev/null 2>&1; then \
		echo "== installing Debian packages for image builds"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(IMAGE_APT_PACKAGES); \
	fi
	@touch $@
# Not part of `setup`: make demo/test do not need qemu (the arm64 tests are opt-in, docs/image.md).

.PHONY: image
# out/ronda-<version>-arm64.img.xz (+ .sha256, .manifest.txt), from Debian's arm64 packages.
image: $(STAMPS)/apt-image $(STAMPS)/models
	$(SUDO) env PYTHON=$(abspath $(PY)) image/build --debian --cache $(IMAGE_CACHE) --out out \
		--model $(IMAGE_MODEL) --xz-level $(IMAGE_XZ)
