"""Config validation: every bad file exits 78 naming the field; good files pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import tomli_w

from firmware import config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ronda.toml"


def ronda(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "firmware", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, **kwargs)


def minimal(**sections) -> dict:
    doc = {"node": {"id": "mgl-kemirirejo-rw05"}}
    doc.update(sections)
    return doc


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "ronda.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


BAD = {
    "wrong type": (minimal(recorder={"segment_s": "ten"}), "recorder.segment_s"),
    "unknown key": (minimal(recorder={"segmnt_s": 10}), "recorder.segmnt_s"),
    "unknown section": (minimal(camera={"name": "x"}), "camera"),
    "bad node id": ({"node": {"id": "RW 05/Kemirirejo"}}, "node.id"),
    "node id with topic wildcard": ({"node": {"id": "rw05#"}}, "node.id"),
    "missing node": ({"mqtt": {"prefix": "ronda/v1"}}, "node"),
    "missing camera url": (minimal(cameras=[{"name": "gang", "kind": "rtsp"}]), "cameras[0]"),
    "bad camera url scheme": (minimal(cameras=[{"name": "gang", "url": "ftp://x/y"}]),
                              "cameras[0]"),
    "duplicate camera names": (
        minimal(cameras=[{"name": "gang", "url": "rtsp://10.0.0.2/s"},
                         {"name": "gang", "url": "rtsp://10.0.0.3/s"}]),
        "cameras"),
    "bad quota": (minimal(recorder={"quota": "lots"}), "recorder.quota"),
    "negative fps": (minimal(cameras=[{"name": "gang", "url": "rtsp://h/s", "fps": -1}]),
                     "cameras[0].fps"),
    "zone of an unknown camera": (
        minimal(cameras=[{"name": "gang", "url": "rtsp://h/s"}],
                detect={"zones": [{"camera": "gnag", "name": "gate",
                                   "points": [[0, 0], [1, 0], [1, 1]]}]}),
        "detect.zones[0].camera"),
    "detection without a model": (minimal(detect={"enabled": True}), "detect.model"),
    "unknown detector type": (minimal(detect={"type": "onnx"}), "detect.type"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exits_78_naming_the_field(tmp_path: Path, case: str) -> None:
    doc, field = BAD[case]
    result = ronda("check-config", str(write(tmp_path, doc)))
    assert result.returncode == config.EX_CONFIG, result.stderr
    assert f"{field}" in result.stderr, result.stderr


def test_unreadable_secret_file_is_an_error(tmp_path: Path) -> None:
    doc = minimal(mqtt={"password_file": str(tmp_path / "nope")})
    result = ronda("check-config", str(write(tmp_path, doc)))
    assert result.returncode == config.EX_CONFIG
    assert "mqtt.password_file" in result.stderr and "unreadable" in result.stderr


def test_secret_readable_by_others_warns(tmp_path: Path) -> None:
    secret = tmp_path / "broker.pass"
    secret.write_text("s3cret\n")
    secret.chmod(0o644)
    result = ronda("check-config", str(write(tmp_path, minimal(
        mqtt={"password_file": str(secret)}))))
    assert result.returncode == 0, result.stderr
    assert "readable by others" in result.stderr and "chmod 600" in result.stderr
    secret.chmod(0o600)
    result = ronda("check-config", str(write(tmp_path, minimal(
        mqtt={"password_file": str(secret)}))))
    assert "readable by others" not in result.stderr
    assert config.read_secret(secret) == "s3cret"


def test_every_problem_is_listed_with_its_value(tmp_path: Path) -> None:
    doc = {"node": {"id": "Bad Id"}, "recorder": {"segment_s": 0, "quoat": 1}}
    result = ronda("check-config", str(write(tmp_path, doc)))
    assert result.returncode == config.EX_CONFIG
    for needle in ("node.id", "'Bad Id'", "recorder.segment_s", "recorder.quoat", "3 problem"):
        assert needle in result.stderr, result.stderr


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[node\nid = 'x'\n")
    result = ronda("check-config", str(path))
    assert result.returncode == config.EX_CONFIG and "not valid TOML" in result.stderr
    result = ronda("check-config", str(tmp_path / "absent.toml"))
    assert result.returncode == config.EX_CONFIG and "No such file" in result.stderr


def test_example_config_validates() -> None:
    result = ronda("check-config", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_schema_is_json_schema_and_accepts_the_example() -> None:
    result = ronda("config-schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = config.tomllib.loads(EXAMPLE.read_text())
    jsonschema.validate(doc, schema)
    assert "node" in schema["required"]


def test_run_strict_refuses_a_bad_config(tmp_path: Path) -> None:
    # without --strict a bad config runs the alarm in safe mode (tests/alarm/*safe_mode*)
    result = ronda("run", "--strict", "--config",
                   str(write(tmp_path, {"node": {"id": "x y"}})))
    assert result.returncode == config.EX_CONFIG
    assert "node.id" in result.stderr


def test_help_teaches() -> None:
    result = ronda("--help")
    assert result.returncode == 0
    for word in ("check-config", "run", "demo", "examples:"):
        assert word in result.stdout
    assert ronda("--version").stdout.startswith("ronda ")


def test_secret_paths_found_everywhere(tmp_path: Path) -> None:
    cam_secret = tmp_path / "cam.pass"
    cam_secret.write_text("x")
    cfg = config.parse(minimal(cameras=[{"name": "a", "url": "rtsp://h/s",
                                         "password_file": str(cam_secret)}]))
    assert ("cameras[0].password_file", cam_secret) in config.secret_paths(cfg)


@pytest.mark.parametrize("key", ["pasword", "pwd", "sandi", "kata_sandi"])
def test_a_misspelt_password_key_never_shows_its_value(key):
    """The value of an unknown key is not needed to fix its name, and it is often the
    password itself (it lands in ronda-error.txt on the FAT card, the journal, health)."""
    with pytest.raises(config.ConfigError) as info:
        config.parse({"node": {"id": "rw05"}, "mqtt": {key: "Rahasia-RW05"}})
    text = "\n".join(str(p) for p in info.value.problems)
    assert f"mqtt.{key}: unknown key" in text and "Rahasia-RW05" not in text
