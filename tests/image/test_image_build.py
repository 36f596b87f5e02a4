"""image/build against a small two-partition image made here: a FAT boot partition and
an ext4 root from a Debian bookworm minbase (debootstrap, cached outside the repo: see
`test_cache` in conftest.py).

Checks the output image itself (decompressed, loop-mounted by offset): the venv under
/opt/ronda/<version> with `current`, `ronda --version` inside the root (chroot), the
units enabled, the example config on the boot partition, the model; then a real
first boot inside the chroot installs a config that `ronda check-config` accepts and
`ronda doctor` runs one inference with the image's own tflite_runtime.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
INCLUDE = "python3,python3-venv,ca-certificates,systemd,tzdata"
MIRROR = os.environ.get("RONDA_DEBIAN_MIRROR", "http://deb.debian.org/debian")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: loop mounts and chroot"),
]


def run(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("check", True)
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


def debootstrap_tree(cache: Path, lock: Callable[[Path], AbstractContextManager[None]]) -> Path:
    """A Debian minbase with what Raspberry Pi OS Lite also has (systemd, python3-venv,
    tzdata), built once and reused (`.complete` marker); keyed by suite, architecture and
    packages (and by this function's code), so a change to any of them builds a new one."""
    arch = run("dpkg", "--print-architecture").stdout.strip()
    key = hashlib.sha256("\0".join([SUITE, arch, INCLUDE, inspect.getsource(_debootstrap)])
                         .encode()).hexdigest()[:12]
    tree = cache / "image" / f"debootstrap-{SUITE}-{arch}-{key}"
    if (tree / ".complete").exists():
        return tree
    with lock(tree):  # another run on this machine may be building it
        if not (tree / ".complete").exists():
            _debootstrap(tree)
    return tree


def _debootstrap(tree: Path) -> None:
    """Run debootstrap into `tree`.partial, trim it, then move it into place."""
    if shutil.which("debootstrap") is None:
        run("apt-get", "install", "-y", "-qq", "--no-install-recommends", "debootstrap",
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    partial = tree.with_name(tree.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run("debootstrap", "--variant=minbase", f"--include={INCLUDE}",
        SUITE, str(partial), MIRROR, timeout=900)
    (partial / "boot" / "firmware").mkdir(parents=True, exist_ok=True)
    (partial / "var" / "cache" / "apt" / "archives").mkdir(parents=True, exist_ok=True)
    for deb in (partial / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    shutil.rmtree(tree, ignore_errors=True)
    partial.rename(tree)
    (tree / ".complete").touch()


def make_base_image(tree: Path, out: Path) -> Path:
    """An SD-card-like image: MBR, p1 FAT32 'bootfs' (64 MiB), p2 ext4 'rootfs' from `tree`."""
    work = out.parent
    boot = work / "boot.fat"
    with boot.open("wb") as fh:
        fh.truncate(64 * 2**20)
    run("mkfs.vfat", "-F", "32", "-n", "bootfs", str(boot))
    used = int(run("du", "-sb", "--exclude=.complete", str(tree)).stdout.split()[0])
    root_mb = used * 13 // 10 // 2**20 + 64
    rootfs = work / "root.ext4"
    run("mkfs.ext4", "-q", "-L", "rootfs", "-d", str(tree), str(rootfs), f"{root_mb}M")
    start1, size1 = 8192, 64 * 2**20 // 512
    start2, size2 = start1 + size1, root_mb * 2**20 // 512
    with out.open("wb") as fh:
        fh.truncate((start2 + size2) * 512)
    run("sfdisk", "-q", str(out), input=f"label: dos\nstart={start1}, size={size1}, type=c\n"
        f"start={start2}, size={size2}, type=83\n")
    for part, start in ((boot, start1), (rootfs, start2)):
        run("dd", f"if={part}", f"of={out}", "bs=1M", f"seek={start * 512}", "oflag=seek_bytes",
            "conv=notrunc,sparse", "status=none")
        part.unlink()
    return out


@contextmanager
def mounted(image: Path, where: Path) -> Iterator[tuple[Path, str]]:
    """The root partition of `image` mounted (by offset) under `where`, and the mtools
    address of its FAT boot partition (this kernel may have no vfat module)."""
    table = json.loads(run("sfdisk", "-J", str(image)).stdout)["partitiontable"]
    p1, p2 = table["partitions"][:2]
    root = where / "root"
    with ExitStack() as stack:
        root.mkdir(parents=True)
        run("mount", "-o", f"loop,offset={p2['start'] * 512},sizelimit={p2['size'] * 512}",
            str(image), str(root))
        stack.callback(run, "umount", "-l", str(root), check=False)
        for fs, target in (("proc", "proc"), ("sysfs", "sys")):
            run("mount", "-t", fs, fs, str(root / target))
            stack.callback(run, "umount", "-l", str(root / target), check=False)
        yield root, f"{image}@@{p1['start'] * 512}"


def chroot(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin:"
               "/usr/sbin:/sbin", "LANG=C.UTF-8", *args, check=check)


@pytest.fixture
def host_name_kept() -> Iterator[None]:
    """Nothing run in the chroot may rename the build host (shared UTS namespace)."""
    before = os.uname().nodename
    yield
    after = os.uname().nodename
    if after != before:
        run("hostname", before)
    assert after == before, "the build host was renamed from inside the chroot"


def test_build_image_from_a_debian_base(tmp_path, wheelhouse, models_dir, host_name_kept,
                                        test_cache, cache_entry_lock):
    timings = {}
    t0 = time.monotonic()
    tree = debootstrap_tree(test_cache, cache_entry_lock)
    timings["debootstrap (cached after the first run)"] = time.monotonic() - t0
    t0 = time.monotonic()
    base = make_base_image(tree, tmp_path / "base.img")
    timings["base image"] = time.monotonic() - t0
    t0 = time.monotonic()
    arch = run("dpkg", "--print-architecture").stdout.strip()
    proc = subprocess.run(
        [str(REPO / "image" / "build"), "--base", str(base), "--out", str(tmp_path / "out"),
         "--wheelhouse", str(wheelhouse), "--offline", "--extras", "detect",
         "--apt", "python3 python3-venv", "--model", str(models_dir / "pose_detection.tflite"),
         "--grow", "600", "--xz-level", "0", "--board", "none", "--arch", arch],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHON": sys.executable})
    timings["image/build"] = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    sys.stderr.write("".join(ln + "\n" for ln in proc.stderr.splitlines() if ln.startswith("== [")))
    version = _version()
    out = tmp_path / "out" / f"ronda-{version}-{arch}.img.xz"
    assert proc.stdout.strip() == str(out) and out.is_file()
    digest = (tmp_path / "out" / f"{out.name}.sha256").read_text().split()[0]
    assert digest == run("sha256sum", str(out)).stdout.split()[0]
    manifest = (tmp_path / "out" / f"ronda-{version}-{arch}.manifest.txt").read_text()
    assert "\npython3 3.11" in manifest and f"\nronda=={version}\n" in manifest, manifest[:2000]
    assert "\ntflite-runtime==2.14.0\n" in manifest and "\nronda.toml.example\n" in manifest
    # pip's output is in the log, not on the screen; the screen says which step it is in
    log = (tmp_path / "out" / "ronda-build.log").read_text()
    assert "Successfully installed" in log and "Successfully installed" not in proc.stderr
    assert "[9/9] compressing" in proc.stderr, proc.stderr

    t0 = time.monotonic()
    image = tmp_path / "check.img"
    with image.open("wb") as fh:
        subprocess.run(["xz", "-dc", "-T0", str(out)], stdout=fh, check=True)
    with mounted(image, tmp_path / "mnt") as (root, fat):
        # the release and the link
        assert os.readlink(root / "opt/ronda/current") == version
        release = json.loads((root / f"opt/ronda/{version}/.release.json").read_text())
        assert release["version"] == version and release["extras"] == "detect"
        assert chroot(root, "/opt/ronda/current/bin/ronda", "--version").stdout.strip() == \
            f"ronda {version}"
        assert chroot(root, "ronda", "--version").returncode == 0  # /usr/local/bin link
        # units installed and enabled
        wants = root / "etc/systemd/system/multi-user.target.wants"
        for unit in ("ronda.service", "ronda-firstboot.service"):
            assert os.readlink(wants / unit) == f"/etc/systemd/system/{unit}"
        verify = run("systemd-analyze", "verify", f"--root={root}", "--man=no",
                     "ronda.service", "ronda-firstboot.service", check=False)
        assert not [ln for ln in verify.stderr.splitlines() if "ronda" in ln], verify.stderr
        assert "Storage=volatile" in (root / "etc/systemd/journald.conf.d/60-ronda.conf"
                                      ).read_text()
        # the user and what it may touch
        groups = chroot(root, "id", "-nG", "ronda").stdout.split()
        assert {"ronda", "gpio", "video"} <= set(groups)
        assert (root / "var/lib/ronda").stat().st_uid == int(
            chroot(root, "id", "-u", "ronda").stdout)
        # model and example config
        model = root / "usr/share/ronda/models/detector.tflite"
        assert model.read_bytes() == (models_dir / "pose_detection.tflite").read_bytes()
        example = run("mtype", "-i", fat, "::ronda.toml.example").stdout
        assert example == (REPO / "image/boot/ronda.toml.example").read_text()

        # a technician's first boot, inside the image (the FAT partition's files copied to
        # its mount point: mounting vfat needs a kernel module this test cannot assume)
        boot = root / "boot" / "firmware"
        text = (example.replace('"mqtt.password" = ""', '"mqtt.password" = "rahasia"')
                .replace('"cameras.gang-utara.password" = ""',
                         '"cameras.gang-utara.password" = "kamera"'))
        (boot / "ronda.toml").write_text(text)
        first = chroot(root, "ronda", "firstboot", check=False)
        assert first.returncode == 0, first.stderr
        installed = root / "etc/ronda/ronda.toml"
        assert oct(installed.stat().st_mode & 0o777) == "0o600"
        assert (root / "etc/hostname").read_text().strip() == "kota-kelurahan-rw00"
        assert os.readlink(root / "etc/localtime") == "/usr/share/zoneinfo/Asia/Jakarta"
        assert "LABEL=RONDA-REC" in (root / "etc/fstab").read_text()
        assert "i" in run("lsattr", "-d", str(root / "srv/ronda")).stdout.split()[0]
        assert "rahasia" not in (boot / "ronda.toml").read_text()
        assert chroot(root, "ronda", "check-config", "/etc/ronda/ronda.toml").returncode == 0
        doctor = chroot(root, "ronda", "doctor", "--json", "--skip",
                        "cameras,storage,gpio,mqtt,clock,power", check=False)
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["model"]["status"] == "ok", checks
    timings["checks"] = time.monotonic() - t0
    sys.stderr.write("".join(f"image test: {k}: {v:.1f} s\n" for k, v in timings.items()))
    print(timings)


def _version() -> str:
    archive = run("git", "-C", str(REPO), "show", "HEAD:firmware/__init__.py").stdout
    return archive.split('__version__ = "', 1)[1].split('"', 1)[0]
