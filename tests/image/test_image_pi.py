"""The Raspberry Pi image, for real, on this x86 machine: `image/build --debian` makes it from
Debian's arm64 packages (debootstrap, raspi-firmware, linux-image-arm64 under
qemu-user-static), then the result is checked the way a Pi 4 and a Pi 5 would need it, and
booted in qemu-system-aarch64 (machine `virt`, the image's own kernel and initrd, the image
as the disk) with a technician's ronda.toml on its boot partition, a test camera and a
broker on the host.

The guest reaches the host only through qemu's user-mode network with `restrict=on`: two
`guestfwd` rules map 10.0.2.100:1883 to the test broker and 10.0.2.101:8554 to the test
camera, both on the host's 127.0.0.1; nothing else is reachable, nothing leaves the machine.

The slow inputs (the debootstrap tree and the tree with kernel and packages, the aarch64
wheels) are cached outside the repo (`test_cache`), keyed by what made them; every run
prints its timings.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devtools.broker import LocalBroker, free_port
from devtools.rtsp_camera import RtspTestCamera

REPO = Path(__file__).resolve().parents[2]
BROKER_IN_GUEST = ("10.0.2.100", 1883)
CAMERA_IN_GUEST = ("10.0.2.101", 8554)
BOOT_DEADLINE_S = float(os.environ.get("RONDA_QEMU_BOOT_TIMEOUT", "1500"))

pytestmark = [
    pytest.mark.slow, pytest.mark.timeout(4800),
    pytest.mark.skipif(os.environ.get("RONDA_TEST_PI") == "0", reason=(
        "RONDA_TEST_PI=0: the arm64 image tests were switched off")),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: debootstrap, loop mounts"),
]


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("check", True)
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


def emulation_missing() -> str:
    """Why arm64 programs cannot run here, or '' when they can."""
    if run("dpkg", "--print-architecture").stdout.strip() == "arm64":
        return ""
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        run("mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt), check=False)
    if not (binfmt / "qemu-aarch64").exists():
        return ("no qemu-aarch64 binfmt_misc handler: "
                "apt-get install qemu-user-static binfmt-support")
    return ""


@dataclass
class PiImage:
    image: Path
    out: Path
    version: str
    fat: str  # mtools address of the FAT partition
    root_offset: int
    root_size: int
    disk_id: str
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def pi_image(tmp_path_factory, pi_wheelhouse, models_dir, test_cache) -> PiImage:
    reason = emulation_missing()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("pi")
    out = tmp / "out"
    timings: dict[str, float] = {}
    version = run("git", "-C", str(REPO), "show", "HEAD:firmware/__init__.py").stdout.split(
        '__version__ = "', 1)[1].split('"', 1)[0]
    reuse = os.environ.get("RONDA_TEST_PI_IMAGE")  # a developer's built .img.xz: checks only
    if reuse:
        out = Path(reuse).parent
    else:
        cached = run(str(REPO / "image" / "debian-base"), "--cache", str(test_cache / "image"),
                     "--cached", check=False)
        if cached.returncode != 0 and os.environ.get("RONDA_TEST_PI_BUILD") != "1":
            pytest.skip(f"the arm64 package tree is not cached ({cached.stdout.strip()}): "
                        "making it under emulation takes 30-70 min, more than a CI run can "
                        "spend; `make image` on this machine fills the same cache, or set "
                        "RONDA_TEST_PI_BUILD=1 to build it here")
        build_pi_image(out, pi_wheelhouse, models_dir, test_cache, timings)
    xz = out / f"ronda-{version}-arm64.img.xz"
    t0 = time.monotonic()
    image = tmp / "pi.img"
    with image.open("wb") as fh:
        subprocess.run(["xz", "-dc", "-T0", str(xz)], stdout=fh, check=True)
    timings["decompress"] = time.monotonic() - t0
    table = json.loads(run("sfdisk", "-J", str(image)).stdout)["partitiontable"]
    p1, p2 = table["partitions"][:2]
    return PiImage(image=image, out=out, version=version, fat=f"{image}@@{p1['start'] * 512}",
                   root_offset=p2["start"] * 512, root_size=p2["size"] * 512,
                   disk_id=table["id"].removeprefix("0x").lower(), timings=timings)


def build_pi_image(out: Path, pi_wheelhouse: Path, models_dir: Path, test_cache: Path,
                   timings: dict[str, float]) -> None:
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(REPO / "image" / "build"), "--debian", "--cache", str(test_cache / "image"),
         "--out", str(out), "--wheelhouse", str(pi_wheelhouse), "--offline",
         "--extras", "detect,gpio", "--model", str(models_dir / "pose_detection.tflite"),
         "--grow", "768", "--xz-level", "0"],
        capture_output=True, text=True, timeout=4000, env={**os.environ, "PYTHON": sys.executable})
    timings["image/build --debian (base cached after the first run)"] = time.monotonic() - t0
    sys.stderr.write("".join(ln + "\n" for ln in proc.stderr.splitlines() if ln.startswith("== [")))
    log = out / "ronda-build.log"
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text()[-3000:] if log.exists()
                                                        else "")
    assert proc.stdout.strip().endswith("-arm64.img.xz")


@contextmanager
def mounted_root(pi: PiImage, where: Path) -> Iterator[Path]:
    where.mkdir(parents=True, exist_ok=True)
    run("mount", "-o", f"loop,offset={pi.root_offset},sizelimit={pi.root_size}",
        str(pi.image), str(where))
    try:
        yield where
    finally:
        run("umount", str(where), check=False)


def fat_files(pi: PiImage) -> set[str]:
    return {ln.removeprefix("::/") for ln in run("mdir", "-b", "-i", pi.fat, "::").stdout.split()}


def fat_text(pi: PiImage, name: str) -> str:
    return run("mtype", "-i", pi.fat, f"::{name}").stdout.replace("\r", "")


def test_the_pi_image_has_what_a_pi_4_and_a_pi_5_boot_from(pi_image: PiImage, tmp_path):
    pi = pi_image
    files = fat_files(pi)
    for needed in ("config.txt", "cmdline.txt", "start4.elf", "fixup4.dat",
                   "bcm2711-rpi-4-b.dtb", "bcm2712-rpi-5-b.dtb", "ronda.toml.example"):
        assert needed in files, sorted(files)
    config = fat_text(pi, "config.txt")
    assert "arm_64bit=1" in config
    kernel = re.search(r"^kernel=(\S+)", config, re.M).group(1)
    initrd = re.search(r"^initramfs (\S+)", config, re.M).group(1)
    assert kernel.startswith("vmlinuz-") and kernel in files and initrd in files
    cmdline = fat_text(pi, "cmdline.txt")
    assert f"root=PARTUUID={pi.disk_id}-02" in cmdline.split()

    with mounted_root(pi, tmp_path / "root") as root:
        fstab = (root / "etc/fstab").read_text()
        assert re.search(rf"^PARTUUID={pi.disk_id}-01\s+/boot/firmware\s+vfat", fstab, re.M)
        assert (root / "usr/bin/dpkg").read_bytes()[18:20] == b"\xb7\x00"  # EM_AARCH64
        wants = root / "etc/systemd/system/multi-user.target.wants"
        for unit in ("ronda.service", "ronda-firstboot.service", "NetworkManager.service"):
            assert (wants / unit).is_symlink(), unit
        sysinit = root / "etc/systemd/system/sysinit.target.wants"
        assert (sysinit / "systemd-timesyncd.service").is_symlink()
        assert not list((root / "etc/ssh").glob("ssh_host_*")), "host keys shared by every card"
        assert (root / "etc/machine-id").read_text() == ""
        # arm64 programs of the image, run here through qemu-user-static
        chroot = ["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin"]
        assert run(*chroot, "/opt/ronda/current/bin/ronda", "--version").stdout.strip() == \
            f"ronda {pi.version}"
        gpio = run(*chroot, "/opt/ronda/current/bin/python", "-c",
                   "import lgpio, gpiozero.pins.lgpio as f; print(f.LGPIOFactory.__name__)")
        assert gpio.stdout.strip() == "LGPIOFactory"

    manifest = (pi.out / f"ronda-{pi.version}-arm64.manifest.txt").read_text()
    for line in (r"^raspi-firmware \S+ all$", r"^linux-image-6\.\S+-arm64 \S+ arm64$",
                 r"^systemd-timesyncd ", r"^python3 3\.11", r"^lgpio==", r"^tflite-runtime==",
                 rf"^ronda=={re.escape(pi.version)}$", r"^bcm2712-rpi-5-b\.dtb$"):
        assert re.search(line, manifest, re.M), line
    size = pi.image.stat().st_size
    sys.stderr.write(f"pi image: {size / 2**20:.0f} MiB raw\n")
    sys.stderr.write("".join(f"pi image: {k}: {v:.1f} s\n" for k, v in pi.timings.items()))


# ---- the boot test ------------------------------------------------------------------------
# What the guest runs once ronda.service is up: it reports on the serial console (the host
# follows it live) and leaves its results on the root filesystem, then powers off. This
# is test instrumentation added to a copy of the built image, not part of the image.
GUEST_PROBE = r"""#!/bin/sh
say() { echo "RONDA-BOOTTEST $* uptime=$(cut -d' ' -f1 /proc/uptime)" > /dev/ttyAMA0; }
out=/var/lib/ronda-boottest; mkdir -p $out
say probe-started
i=0; until systemctl is-active -q ronda.service || [ $i -ge 900 ]; do sleep 1; i=$((i+1)); done
say "ronda.service=$(systemctl is-active ronda.service)"
i=0; until [ -n "$(find /srv/ronda/recordings -name '*.mp4' -size +1k 2>/dev/null)" ] \
    || [ $i -ge 450 ]; do sleep 2; i=$((i+1)); done
say "segments=$(find /srv/ronda/recordings -name '*.mp4' -size +1k 2>/dev/null | wc -l)"
# No GPIO header or vcgencmd in an emulator, no time server for the isolated guest: skipped.
ronda doctor --json --skip gpio,power,clock > $out/doctor.json 2> $out/doctor.err
say "doctor-exit=$?"
systemctl show ronda.service -p ActiveState -p SubState -p NRestarts -p MainPID > $out/service.txt
findmnt -rn -o TARGET,SOURCE,FSTYPE > $out/mounts.txt
systemctl --failed --no-legend --plain > $out/failed.txt
systemctl is-active ssh.service > $out/ssh.txt
journalctl -b --no-pager > $out/journal.txt 2>&1
sync
say done
systemctl poweroff
"""
GUEST_UNIT = """[Unit]
Description=Ronda boot test probe (test instrumentation)
After=ronda.service
Wants=ronda.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/ronda-boottest
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
"""


def technician_file() -> str:
    """The example ronda.toml as a technician fills it in, for the emulator's network."""
    text = (REPO / "image/boot/ronda.toml.example").read_text()
    broker = f"mqtt://{BROKER_IN_GUEST[0]}:{BROKER_IN_GUEST[1]}"
    camera = f"rtsp://{CAMERA_IN_GUEST[0]}:{CAMERA_IN_GUEST[1]}/cam"
    for old, new in (('["mqtts://cc.example.go.id:8883"]', f'["{broker}"]'),
                     ('"rtsp://192.168.1.64:554/Streaming/Channels/101"', f'"{camera}"'),
                     ('"rtsp://192.168.1.64:554/Streaming/Channels/102"', f'"{camera}"'),
                     ('"mqtt.password" = ""', '"mqtt.password" = "rahasia"'),
                     ('"cameras.gang-utara.password" = ""',
                      '"cameras.gang-utara.password" = "kamera"')):
        assert old in text, old
        text = text.replace(old, new)
    return text


def make_ssd(path: Path) -> None:
    """The recordings SSD: an empty ext4 labelled RONDA-REC, as a technician prepares one."""
    with path.open("wb") as fh:
        fh.truncate(4 * 2**30)  # sparse; above the store's free-space floor (512 MiB)
    run("mkfs.ext4", "-q", "-L", "RONDA-REC", str(path))


def qemu_command(pi: PiImage, kernel: Path, initrd: Path, ssd: Path, broker: int,
                 camera: int, console: Path) -> list[str]:
    cmdline = fat_text(pi, "cmdline.txt").split()
    keep = [a for a in cmdline if not a.startswith("console=")]
    # cmd: (one socat per connection), not a tcp: chardev, which is a single connection made
    # when qemu starts; the recorder, the detector and the doctor each open their own.
    fwd = ",".join(f"guestfwd=tcp:{addr}:{port}-cmd:socat STDIO TCP:127.0.0.1:{host_port}"
                   for (addr, port), host_port in ((BROKER_IN_GUEST, broker),
                                                   (CAMERA_IN_GUEST, camera)))
    return ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a72", "-smp", "2",
            "-m", "2048", "-accel", "tcg,thread=multi", "-display", "none", "-no-reboot",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", " ".join([*keep, "console=ttyAMA0"]),
            "-drive", f"if=none,id=sd,file={pi.image},format=raw",
            "-device", "virtio-blk-pci,drive=sd",
            "-drive", f"if=none,id=ssd,file={ssd},format=raw",
            "-device", "virtio-blk-pci,drive=ssd",
            "-netdev", f"user,id=net0,restrict=on,{fwd}",
            "-device", "virtio-net-pci,netdev=net0",
            "-serial", f"file:{console}", "-monitor", "none"]


MILESTONES = {  # console line -> what the timing is called
    "Booting Linux on physical CPU": "kernel started",
    "Run /init as init process": "initramfs",
    "systemd[1]: Detected architecture arm64": "systemd started",
    "RONDA-BOOTTEST probe-started": "multi-user reached (probe started)",
    "RONDA-BOOTTEST ronda.service=active": "ronda.service active",
    "RONDA-BOOTTEST segments=": "recording checked",
    "RONDA-BOOTTEST doctor-exit=": "ronda doctor done",
    "RONDA-BOOTTEST done": "results written",
}


def test_the_pi_image_boots_in_qemu_to_a_green_node(pi_image: PiImage, tmp_path):
    if os.environ.get("RONDA_TEST_PI_BOOT") == "0":
        pytest.skip("RONDA_TEST_PI_BOOT=0: the emulated boot was switched off")
    for tool, package in (("qemu-system-aarch64", "qemu-system-arm"), ("socat", "socat")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing: apt-get install {package} (make setup does)")
    pi = pi_image
    t_start = time.monotonic()
    boot_dir = tmp_path / "boot"
    boot_dir.mkdir()
    files = fat_files(pi)
    kernel_name = re.search(r"^kernel=(\S+)", fat_text(pi, "config.txt"), re.M).group(1)
    initrd_name = re.search(r"^initramfs (\S+)", fat_text(pi, "config.txt"), re.M).group(1)
    assert kernel_name in files and initrd_name in files
    kernel, initrd = boot_dir / kernel_name, boot_dir / initrd_name
    run("mcopy", "-i", pi.fat, f"::{kernel_name}", f"::{initrd_name}", str(boot_dir))
    (boot_dir / "ronda.toml").write_text(technician_file())
    run("mcopy", "-i", pi.fat, str(boot_dir / "ronda.toml"), "::ronda.toml")
    with mounted_root(pi, tmp_path / "root") as root:
        probe = root / "usr/local/sbin/ronda-boottest"
        probe.write_text(GUEST_PROBE)
        probe.chmod(0o755)
        (root / "etc/systemd/system/ronda-boottest.service").write_text(GUEST_UNIT)
        (root / "etc/systemd/system/multi-user.target.wants/ronda-boottest.service"
         ).symlink_to("/etc/systemd/system/ronda-boottest.service")
    ssd = tmp_path / "ssd.img"
    make_ssd(ssd)
    console = tmp_path / "console.log"
    console.touch()
    seen: dict[str, float] = {}
    with ExitStack() as stack:
        broker = stack.enter_context(LocalBroker())
        camera = stack.enter_context(RtspTestCamera(user="admin", password="kamera",
                                                    port=free_port()))
        node_status = subscribe(broker.port, "ronda/v1/+/status", stack)
        qemu = subprocess.Popen(qemu_command(pi, kernel, initrd, ssd, broker.port, camera.port,
                                             console), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        stack.callback(lambda: qemu.poll() is None and qemu.kill())
        t_boot = time.monotonic()
        deadline = t_boot + BOOT_DEADLINE_S
        while qemu.poll() is None and time.monotonic() < deadline:
            text = console.read_text(errors="replace")
            for marker, name in MILESTONES.items():
                if name not in seen and marker in text:
                    seen[name] = time.monotonic() - t_boot
                    sys.stderr.write(f"qemu boot: {name} after {seen[name]:.0f} s\n")
            time.sleep(2)  # on purpose: reading the boot console every 2 s
        timed_out = qemu.poll() is None
        if timed_out:
            qemu.kill()
        qemu_out = qemu.communicate()[0]
        statuses = node_status()
    text = console.read_text(errors="replace")
    report = "\n".join(f"qemu boot: {k} after {v:.0f} s" for k, v in seen.items())
    sys.stderr.write(f"qemu boot: total {time.monotonic() - t_start:.0f} s (deadline "
                     f"{BOOT_DEADLINE_S:.0f} s)\n")
    assert not timed_out, (f"the emulated boot did not finish in {BOOT_DEADLINE_S:.0f} s; got "
                           f"this far:\n{report}\n--- console tail:\n{text[-4000:]}")
    assert qemu.returncode == 0, qemu_out[-2000:]
    assert "ronda.service active" in seen, f"{report}\n{text[-4000:]}"
    with mounted_root(pi, tmp_path / "after") as root:
        results = root / "var/lib/ronda-boottest"
        journal = (results / "journal.txt").read_text(errors="replace")
        # first boot applied the technician's file
        assert (root / "etc/ronda/ronda.toml").is_file(), journal[-3000:]
        assert json.loads((root / "var/lib/ronda/firstboot.json").read_text())
        assert (root / "etc/hostname").read_text().strip() == "kota-kelurahan-rw00"
        assert "LABEL=RONDA-REC" in (root / "etc/fstab").read_text()
        mounts = (results / "mounts.txt").read_text()
        assert "/srv/ronda /dev/vdb ext4" in mounts and "/boot/firmware" in mounts, mounts
        service = (results / "service.txt").read_text()
        assert "ActiveState=active" in service and "NRestarts=0" in service, service
        # a technician reaches the node over SSH; no unit of the image may fail at boot
        assert (results / "ssh.txt").read_text().strip() == "active", journal[-3000:]
        assert (results / "failed.txt").read_text().strip() == "", (
            (results / "failed.txt").read_text())
        doctor = json.loads((results / "doctor.json").read_text())
    assert "rahasia" not in fat_text(pi, "ronda.toml"), "secrets stay on the FAT partition"
    assert "segments=0" not in text and "RONDA-BOOTTEST segments=" in text, text[-3000:]
    checks = {c["name"]: c for c in doctor["checks"]}
    for name, check in checks.items():
        if name in ("gpio", "power", "clock"):
            assert check["status"] == "skip", check
        else:
            assert check["status"] in ("ok", "warn"), (name, check, journal[-3000:])
    # online while it ran; the probe's poweroff is a clean stop, which says offline itself
    assert statuses.get("kota-kelurahan-rw00", [])[-2:] == ["online", "offline"], statuses


def subscribe(port: int, topic: str, stack: ExitStack):
    """Collect `topic`'s payloads per node id, in order; returns a function that reads them."""
    import paho.mqtt.client as mqtt

    seen: dict[str, list[str]] = {}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="boottest-watch")

    def on_message(_c, _u, msg) -> None:
        seen.setdefault(msg.topic.split("/")[2], []).append(msg.payload.decode(errors="replace"))

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    stack.callback(client.loop_stop)
    stack.callback(client.disconnect)
    return lambda: {node: list(values) for node, values in seen.items()}
