"""`ronda alarm-test` as a technician runs it (a real child process, mock pins)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, factory: str = "mock") -> Path:
    path = tmp_path / "ronda.toml"
    path.write_text(f"""
[node]
id = "cli-test"
data_dir = "{tmp_path / 'state'}"
[mqtt]
enabled = false
[gpio]
pin_factory = "{factory}"
panic = [{{ pin = 17, name = "pos" }}]
siren = {{ pin = 23 }}
light = {{ pin = 24 }}
""")
    return path


def ronda(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_plays_a_rhythm_and_the_light_then_switches_off(tmp_path):
    done = ronda("alarm-test", "-c", str(write_config(tmp_path)), "--siren", "fire",
                 "--light", "strobe", "--seconds", "0.3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "panel ready: buttons panic:pos; outputs siren, light" in lines[0]
    assert any(line.endswith("siren -> fire") for line in lines)
    assert any(line.endswith("siren -> off") for line in lines)
    assert any(line.endswith("light -> off") for line in lines)


def test_unknown_rhythm_and_missing_gpio_are_explained(tmp_path):
    done = ronda("alarm-test", "-c", str(write_config(tmp_path)), "--siren", "disco")
    assert done.returncode == 2 and "known: disaster, fire, panic" in done.stderr
    done = ronda("alarm-test", "-c", str(write_config(tmp_path, "lgpio")), "--watch", "0.1")
    assert done.returncode == 1 and "cannot open the GPIO panel" in done.stderr


def test_help_teaches_with_examples():
    done = ronda("alarm-test", "--help")
    assert done.returncode == 0 and "examples:" in done.stdout and "--watch 30" in done.stdout


def test_outputs_off_drives_every_output_off(tmp_path):
    done = ronda("outputs-off", "-c", str(write_config(tmp_path)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["siren (pin 23) off", "light (pin 24) off"]
    done = ronda("outputs-off", "-c", str(write_config(tmp_path, "lgpio")))
    assert done.returncode == 1 and "cannot open GPIO" in done.stderr
