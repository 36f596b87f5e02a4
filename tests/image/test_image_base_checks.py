"""image/build refuses a base that cannot boot a Pi 4 and a Pi 5, before any work, with a
message naming each thing that is missing (seconds: tiny images made here, no packages).

The bases are two-partition images like a real SD card: a FAT "bootfs" written with mtools
and an ext4 root holding only what the checks read (/usr/bin/dpkg for the architecture,
/etc/fstab).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "image" / "build"
DISK_ID = "5eed1e55"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop mounts")

PI_BOOT = {
    "config.txt": "arm_64bit=1\nkernel=vmlinuz-6.12.0-arm64\ninitramfs initrd.img-6.12.0-arm64\n",
    "cmdline.txt": f"console=tty0 root=PARTUUID={DISK_ID}-02 rw rootwait\n",
    "start4.elf": "", "fixup4.dat": "", "bcm2711-rpi-4-b.dtb": "", "bcm2712-rpi-5-b.dtb": "",
    "vmlinuz-6.12.0-arm64": "", "initrd.img-6.12.0-arm64": "",
}
FSTAB = f"PARTUUID={DISK_ID}-01 /boot/firmware vfat defaults 0 2\n"


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, **kw)


def arm64_elf() -> bytes:
    """The first 20 bytes of an aarch64 ELF executable: all the architecture check reads."""
    return bytes.fromhex("7f454c46020101000000000000000000" "0200b700") + b"\0" * 44


def make_base(tmp: Path, boot: dict[str, str], fstab: str = FSTAB,
              dpkg: bytes | None = None) -> Path:
    tree = tmp / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "usr/bin/dpkg").write_bytes(dpkg if dpkg is not None else arm64_elf())
    (tree / "etc/fstab").write_text(fstab)
    fat, ext4, image = tmp / "boot.fat", tmp / "root.ext4", tmp / "base.img"
    with fat.open("wb") as fh:
        fh.truncate(34 * 2**20)
    run("mkfs.vfat", "-F", "32", "-n", "bootfs", str(fat))
    files = tmp / "bootfiles"
    files.mkdir()
    for name, text in boot.items():
        (files / name).write_text(text)
        run("mcopy", "-i", str(fat), str(files / name), f"::{name}")
    run("mkfs.ext4", "-q", "-L", "rootfs", "-d", str(tree), str(ext4), "16M")
    start1, size1 = 2048, 34 * 2048
    start2, size2 = start1 + size1, 16 * 2048
    with image.open("wb") as fh:
        fh.truncate((start2 + size2) * 512)
    run("sfdisk", "-q", str(image), input=f"label: dos\nlabel-id: 0x{DISK_ID}\n"
        f"start={start1}, size={size1}, type=c\nstart={start2}, size={size2}, type=83\n")
    for part, start in ((fat, start1), (ext4, start2)):
        run("dd", f"if={part}", f"of={image}", "bs=1M", f"seek={start * 512}",
            "oflag=seek_bytes", "conv=notrunc", "status=none")
    return image


def build(tmp: Path, base: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    wheel = tmp / "ronda-0.1.0-py3-none-any.whl"  # refused before the wheel is opened
    wheel.write_bytes(b"")
    return subprocess.run([str(BUILD), "--base", str(base), "--wheel", str(wheel), "--grow", "0",
                           "--out", str(tmp / "out"), "--offline", *extra],
                          capture_output=True, text=True, timeout=300)


def test_a_base_without_pi_boot_files_is_refused_naming_each(tmp_path):
    base = make_base(tmp_path, {"cmdline.txt": "root=/dev/sda2 rw\n"}, fstab="")
    proc = build(tmp_path, base)
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr
    assert "the base cannot boot a Raspberry Pi 4 and 5" in err
    for missing in ("config.txt", "start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb",
                    "bcm2712-rpi-5-b.dtb", "/etc/fstab line for /boot/firmware"):
        assert f"no {missing}" in err, err
    assert "root=/dev/sda2: name it by PARTUUID" in err
    assert "--debian" in err  # says what to do instead
    assert not (tmp_path / "out" / "ronda-0.1.0-arm64.img.xz").exists()


def test_a_wrong_root_a_missing_kernel_and_a_foreign_root_are_named(tmp_path):
    boot = dict(PI_BOOT, **{"cmdline.txt": "root=PARTUUID=0badc0de-02 rw\n"})
    del boot["vmlinuz-6.12.0-arm64"]
    host_dpkg = Path(shutil.which("dpkg") or "/usr/bin/dpkg").read_bytes()[:64]
    base = make_base(tmp_path, boot, dpkg=host_dpkg)
    proc = build(tmp_path, base)
    assert proc.returncode == 1
    err = proc.stderr
    assert "no vmlinuz-6.12.0-arm64 (the kernel config.txt names)" in err
    assert f"root=PARTUUID=0badc0de-02, but the root partition is PARTUUID={DISK_ID}-02" in err
    assert "its root filesystem is amd64" in err and "not arm64" in err
    assert "start4.elf" not in err  # only what is missing is named


def test_a_complete_base_passes_the_boot_checks(tmp_path):
    base = make_base(tmp_path, PI_BOOT)
    proc = build(tmp_path, base)
    # it gets past the checks and fails later, at the empty wheel in a root with no Python
    assert "cannot boot" not in proc.stderr, proc.stderr
    assert "[3/9] checking the base" in proc.stderr
    assert "[4/9]" in proc.stderr


def test_board_none_skips_the_pi_checks_but_not_the_architecture(tmp_path):
    base = make_base(tmp_path, {"cmdline.txt": "root=/dev/sda2\n"}, fstab="")
    proc = build(tmp_path, base, "--board", "none")
    assert "cannot boot" not in proc.stderr, proc.stderr
    proc = build(tmp_path, base, "--board", "none", "--arch", "riscv64")
    assert "its root filesystem is arm64" in proc.stderr and "not riscv64" in proc.stderr
