"""What a node's release holds: the wheel image/build installs (`RONDA_WHEEL=node`) has the
node's packages and not the Command Center's (`central`) nor the development tools
(`devtools`); there, `ronda cmd`, `watch`, `demo`, `fleet-sim` and `dev-node` say in one
line what they are and exit 2, while the node's own commands work. And the node's
production commands never load `central` or `devtools`, even where they are installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_PACKAGES = ("firmware", "drivers", "recorder", "inference", "mqtt", "support", "web",
                 "uplink")
OFF_NODE = {"cmd": ["rw05", "ping", "--key", "op.pem"], "watch": ["--once", "1"],
         "demo": ["--seconds", "1"], "fleet-sim": ["--local"], "dev-node": ["-c", "x.toml"]}


def build_wheel(dest: Path, kind: str) -> Path:
    """A wheel of the tracked files as they are now (as image/build makes one from `git
    archive`), built offline: no dependencies, no build isolation."""
    source = dest / "src"
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, source / rel)
    env = {**os.environ, "RONDA_WHEEL": kind}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(dest / "dist"),
                    str(source)], check=True, env=env, cwd=dest)
    (wheel,) = (dest / "dist").glob("ronda-*.whl")
    return wheel


@pytest.fixture(scope="module")
def node_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("node-wheel"), "node")


@pytest.fixture(scope="module")
def node_site(node_wheel: Path) -> Path:
    """The node wheel unpacked, as pip would install it into a release's site-packages."""
    site = node_wheel.parent.parent / "site"
    with zipfile.ZipFile(node_wheel) as zf:
        zf.extractall(site)
    return site


def node_python(site: Path, code: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `code` with only the node wheel's code importable: `python -S` (no site, so no
    editable install of this checkout), the wheel, then the third-party packages."""
    paths = [str(site), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {paths!r}\n"
                           + code, *argv], cwd=cwd, text=True, capture_output=True,
                          timeout=120, env={k: v for k, v in os.environ.items()
                                            if k != "PYTHONPATH"})


def on_node(site: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """`ronda ARGV` as installed from the node wheel."""
    return node_python(site, "sys.argv[0] = 'ronda'\n"
                       "from firmware.cli import main; sys.exit(main())", *argv, cwd=cwd)


def test_node_wheel_has_the_node_packages_and_no_central_or_devtools(node_wheel: Path) -> None:
    with zipfile.ZipFile(node_wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(meta).decode()
        entry_points = zf.read(meta.replace("METADATA", "entry_points.txt")).decode()
    tops = {n.split("/")[0] for n in names if "/" in n}
    assert not tops & {"central", "devtools"}, sorted(tops)
    assert set(NODE_PACKAGES) <= tops, sorted(tops)
    for data in ("mqtt/schemas/event.json", "firmware/data/", "web/static/"):
        assert any(n.startswith(data) for n in names), f"package data {data} missing"
    assert "ronda = firmware.cli:main" in entry_points
    assert "ronda-central" not in entry_points  # its code is not in this wheel
    assert "Provides-Extra: central" not in metadata
    assert "Provides-Extra: detect" in metadata


def test_on_a_node_the_off_node_tools_say_what_they_are_in_one_line(
        node_site: Path, tmp_path: Path) -> None:
    # one process runs them all (each through `ronda`'s main, as the console script does)
    runs = [[command, *args] for command, argv in OFF_NODE.items() for args in (argv, ["-h"])]
    code = """
import contextlib, importlib.util, io, json
from firmware.cli import main
assert importlib.util.find_spec("central") is None, "the checkout leaked in"
out = []
for argv in json.loads(sys.argv[1]):
    err, std = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
        try:
            rc = main(argv)
        except SystemExit as exc:
            rc = exc.code
    out.append([argv, rc, std.getvalue(), err.getvalue()])
print(json.dumps(out))
"""
    proc = node_python(node_site, code, json.dumps(runs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for argv, rc, stdout, stderr in json.loads(proc.stdout):
        command = argv[0]
        kind = "Command Center tool" if command in ("cmd", "watch") else "development tool"
        assert rc == 2, (argv, stdout, stderr)
        assert stderr.startswith(f"ronda {command}: not installed here: a {kind}"), stderr
        assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
        assert stdout == "", stdout
    listing = on_node(node_site, "--help", cwd=tmp_path).stdout
    commands = set(re.findall(r"^ {4}(\S+)", listing, re.MULTILINE))
    assert {"run", "doctor", "firstboot", "update", "check-config", "keys"} <= commands
    assert not commands & set(OFF_NODE), commands


def test_on_a_node_its_own_commands_work_without_central_or_devtools(
        node_site: Path, tmp_path: Path) -> None:
    proc = on_node(node_site, "check-config", str(ROOT / "examples" / "ronda.toml"),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = on_node(node_site, "keys", "generate", "--private", "op.pem", cwd=tmp_path)
    assert proc.returncode == 0 and "command_keys" in proc.stdout, proc.stderr


def test_full_wheel_keeps_the_tools(tmp_path: Path) -> None:
    """Without RONDA_WHEEL (a Command Center, a source checkout) everything is there."""
    with zipfile.ZipFile(build_wheel(tmp_path, "full")) as zf:
        names = zf.namelist()
    tops = {n.split("/")[0] for n in names if "/" in n}
    assert {"central", "devtools", *NODE_PACKAGES} <= tops
    assert any(n.startswith("central/static/") for n in names)


def test_production_commands_never_load_central_or_devtools() -> None:
    """In a full checkout, where both are importable: `ronda`'s parser (what every command
    builds), every module of firmware (all `ronda run`, `doctor`, `firstboot`, `update`
    can import) and a real `ronda check-config` leave both out of sys.modules."""
    code = """
import importlib, pkgutil, sys
import firmware
from firmware.cli import build_parser, main
build_parser()
for info in pkgutil.walk_packages(firmware.__path__, "firmware."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
assert main(["check-config", sys.argv[1]]) == 0
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("central", "devtools"))
assert importlib.util.find_spec("central") and importlib.util.find_spec("devtools")
print("loaded:", loaded)
"""
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "ronda.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "loaded: []" in proc.stdout, proc.stdout


def test_the_installers_build_the_node_wheel() -> None:
    """scripts/install-jetson's plan (--dry-run, no wheel given) builds it with
    RONDA_WHEEL=node; image/build (root and loop devices: not run here) has it on the one
    line that builds its wheel."""
    plan = subprocess.run([str(ROOT / "scripts" / "install-jetson"), "--dry-run", "--force"],
                          capture_output=True, text=True, timeout=60)
    assert plan.returncode == 0, plan.stderr
    (line,) = [ln for ln in plan.stdout.splitlines() if "pip wheel" in ln]
    assert "RONDA_WHEEL=node" in line, line
    build = (ROOT / "image" / "build").read_text().splitlines()
    (line,) = [ln for ln in build if "pip wheel" in ln and not ln.lstrip().startswith("#")]
    assert "RONDA_WHEEL=node" in line, line
