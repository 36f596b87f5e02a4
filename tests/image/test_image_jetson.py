"""scripts/install-jetson: refuses a non-Jetson, and its plan (--dry-run) installs the same
layout as the image. (A real run needs JetPack 6 hardware: see docs/image.md.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install-jetson"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_refuses_a_machine_that_is_not_a_jetson():
    if Path("/etc/nv_tegra_release").exists():  # pragma: no cover - on a real Jetson
        return
    proc = run("--dry-run")
    assert proc.returncode == 1 and "not a Jetson" in proc.stderr


def test_plan_matches_the_image_layout(tmp_path):
    wheel = tmp_path / "ronda-0.4.2-py3-none-any.whl"
    wheel.write_bytes(b"")
    config = tmp_path / "ronda.toml"
    config.write_text('[node]\nid = "rw"\n')
    proc = run("--dry-run", "--force", "--wheel", str(wheel), "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert "python3 -m venv /opt/ronda/0.4.2" in plan
    assert "ronda[jetson,detect] @ file://" in plan
    assert "ln -sfn 0.4.2 /opt/ronda/current" in plan
    assert "systemctl enable ronda.service ronda-firstboot.service" in plan
    assert "ronda firstboot --boot" in plan and "--root / --force" in plan
    assert plan.index("firstboot") < plan.index("systemctl restart ronda.service")
    assert "usermod -a -G gpio,video ronda" in plan
    assert "ronda.service.d/jetson.conf" in plan


def test_bad_wheel_name_is_refused(tmp_path):
    wheel = tmp_path / "other-1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    proc = run("--dry-run", "--force", "--wheel", str(wheel))
    assert proc.returncode == 1 and "not a ronda wheel" in proc.stderr
