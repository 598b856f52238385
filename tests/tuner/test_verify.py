"""`dm-tune verify`: real llama.cpp runs of a profile's CPU tier on the demo GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest
from demo_profile import CPU_SETTINGS, UNREACHABLE_MB, write_demo_profile
from typer.testing import CliRunner

from objectives.launch import ColdLauncher, TrialSpec
from objectives.workload import Workload
from tuner.cli import app
from tuner.profile.verify import judge
from tuner.yaml_io import load_model

runner = CliRunner()


@pytest.fixture(scope="module")
def measured_tok_s(demo_model: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    """The CPU tier's speed measured now, as a study would have recorded it (one trial)."""
    d = tmp_path_factory.mktemp("measure")
    w = d / "workload.yaml"
    w.write_text(QUICK_WORKLOAD, encoding="utf-8")
    spec = TrialSpec.of(demo_model, CPU_SETTINGS, load_model(w, Workload).spec(repeats=2))
    res = ColdLauncher().run(spec, 300)
    assert res.status == "ok" and res.metrics is not None, res.reason
    return res.metrics.gen_tok_s


QUICK_WORKLOAD = (
    "version: 2\n"
    "system_prompt: Tu es Kira, une assistante virtuelle concise.\n"
    "message: Tu peux me donner une idée de musique ?\n"
    "gen_tokens: 16\n"
    "repeats: 2\n"
)


def _args(profile: Path, workload: Path, *extra: str) -> list[str]:
    return ["verify", str(profile), "--workload", str(workload), *extra]


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    p = tmp_path / "workload.yaml"
    p.write_text(QUICK_WORKLOAD, encoding="utf-8")
    return p


@pytest.mark.slow
def test_verify_passes_on_the_measured_cpu_tier(
    demo_model: Path, measured_tok_s: float, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=measured_tok_s)
    # 50 %: the test machine is shared; a real regression (e.g. a CPU-only wheel) is >5x.
    r = runner.invoke(app, _args(profile, workload, "--runs", "2", "--tolerance", "0.5"))
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line for line in r.output.splitlines() if line.strip()}
    assert "PASS" in rows["cpu_fallback"]
    assert f"skipped (needs {UNREACHABLE_MB} MB free" in rows["performance"]
    assert "OK: 1 tier(s) verified, 1 skipped" in r.output


@pytest.mark.slow
def test_verify_fails_when_the_recorded_speed_is_10x_too_high(
    demo_model: Path, measured_tok_s: float, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=measured_tok_s * 10)
    r = runner.invoke(app, _args(profile, workload, "--runs", "1"))
    assert r.exit_code == 1, r.output
    row = next(line for line in r.output.splitlines() if line.startswith("cpu_fallback"))
    assert "FAIL" in row and "slower than recorded" in row and "unknown" in row
    assert "FAILED: cpu_fallback" in r.output


@pytest.mark.slow
def test_verify_only_the_tiers_named(
    demo_model: Path, measured_tok_s: float, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=measured_tok_s)
    r = runner.invoke(
        app, _args(profile, workload, "--tier", "cpu_fallback", "--runs", "1", "--tolerance", "0.9")
    )
    assert r.exit_code == 0, r.output
    assert "Verifying 1 tier(s)" in r.output and "OK: 1 tier(s) verified, 0 skipped" in r.output
    assert not any(line.startswith("performance") for line in r.output.splitlines())


def test_an_unknown_tier_is_one_line_and_nothing_runs(
    demo_model: Path, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=10)
    r = runner.invoke(app, _args(profile, workload, "--tier", "default", "--tier", "fast"))
    assert r.exit_code == 2 and "Verifying" not in r.output
    assert r.stderr.strip() == (
        "error: no tier named fast in the profile; its tiers are performance, cpu_fallback "
        "(or `default`)"
    )


def test_a_profile_for_another_model_needs_model(tmp_path: Path, workload: Path) -> None:
    gguf = tmp_path / "other.gguf"
    gguf.write_bytes(b"GGUF stand-in")
    profile = write_demo_profile(tmp_path / "p.yaml", gguf, tok_s=10, sha256="cd" * 32)
    r = runner.invoke(app, _args(profile, workload))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: the profile was measured with other.gguf")
    assert "pass --model PATH" in r.stderr
    r = runner.invoke(app, _args(profile, workload, "--model", str(workload)))
    assert r.exit_code == 2 and "regenerate it for this model" in r.stderr


def test_bad_tolerance_is_a_user_error(tmp_path: Path, workload: Path) -> None:
    r = runner.invoke(app, _args(tmp_path / "missing.yaml", workload, "--tolerance", "1.5"))
    assert r.exit_code == 2 and "--tolerance" in r.stderr


# The VRAM rule with made-up readings: this machine has no GPU to produce real ones.
def test_vram_over_the_bound_fails_fake_gpu_numbers() -> None:
    c = judge("balanced", 50.0, 4000.0, (50.0, 51.0, 49.0), (4100.0, 4200.0, 4150.0), 0.1)
    assert c.verdict == "fail" and "VRAM 4150 MB > bound 4000 MB" in c.reason
    ok = judge("balanced", 50.0, 4000.0, (46.0, 50.0), (3900.0, 3950.0), 0.1)
    assert ok.verdict == "pass" and ok.measured_vram_mb == 3925.0
    assert ok.delta_pct == pytest.approx(-4.0)


def test_unknown_vram_is_never_zero() -> None:
    c = judge("balanced", 50.0, 4000.0, (50.0,), (None,), 0.1)
    assert c.measured_vram_mb is None and c.verdict == "pass" and "VRAM unknown" in c.reason
    cpu = judge("cpu_fallback", 10.0, 0.0, (10.0,), (None,), 0.1)
    assert cpu.verdict == "pass" and cpu.reason == ""
