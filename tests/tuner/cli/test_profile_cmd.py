"""`dm-tune profile select`: in-process with CliRunner, and once as the installed command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from tuner.cli import app

runner = CliRunner()


def test_select_prints_the_tier_and_its_llama_keys(profile_path: Path) -> None:
    r = runner.invoke(app, ["profile", "select", str(profile_path), "--free-vram", "5000"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["tier"] == "balanced"
    assert out["llama"] == {
        "n_gpu_layers": 20,
        "n_ctx": 2048,
        "n_batch": 256,
        "n_threads": 2,
        "use_mlock": False,
    }


def test_select_with_no_free_vram_gives_the_cpu_tier(profile_path: Path) -> None:
    r = runner.invoke(app, ["profile", "select", str(profile_path), "--free-vram", "0"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tier"] == "cpu_fallback"


def test_a_tampered_profile_is_one_error_line_and_exit_2(profile_path: Path) -> None:
    data = yaml.safe_load(profile_path.read_text(encoding="utf-8"))
    data["tiers"][0]["llama"]["n_gpu_layer"] = 33
    profile_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    r = runner.invoke(app, ["profile", "select", str(profile_path), "--free-vram", "0"])
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "unknown key 'tiers.0.llama.n_gpu_layer'" in r.stderr


def test_a_newer_profiles_describing_key_is_one_warning_line(profile_path: Path) -> None:
    data = yaml.safe_load(profile_path.read_text(encoding="utf-8"))
    data["tiers"][0]["measured"]["tok_per_joule"] = 2.0
    profile_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    r = runner.invoke(app, ["profile", "select", str(profile_path), "--free-vram", "0"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["tier"] == "cpu_fallback"
    assert r.stderr.startswith("warning: ") and r.stderr.count("\n") == 1
    assert "'tiers.0.measured.tok_per_joule'" in r.stderr


def test_another_model_is_refused_unless_forced(profile_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF not the measured model")
    args = ["profile", "select", str(profile_path), "--free-vram", "0", "--model", str(other)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and "regenerate it for this model" in r.stderr
    r = runner.invoke(app, [*args, "--force"])
    assert r.exit_code == 0 and json.loads(r.stdout)["tier"] == "cpu_fallback"


def test_installed_command_runs(profile_path: Path) -> None:
    exe = Path(sys.executable).parent / "dm-tune"
    cmd = [str(exe), "profile", "select", str(profile_path), "--free-vram", "24000"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["tier"] == "performance"
