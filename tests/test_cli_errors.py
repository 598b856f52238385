"""Bad input: one line naming the problem and its fix, exit code 2, no traceback, no files."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuner.cli import app

runner = CliRunner()


def _fails_cleanly(args: list[str], cwd: Path, *expected: str) -> str:
    r = runner.invoke(app, args)
    out = r.output.strip()
    assert r.exit_code == 2, out
    assert "Traceback" not in out
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    for e in expected:
        assert e in out
    assert not (cwd / "studies" / "dm-tune.db").exists()
    assert not list((cwd / "configs").glob("profiles/*.yaml"))
    return out


def test_missing_model(chdir_tmp: Path) -> None:
    _fails_cleanly(["run", "--model", "nope.gguf"], chdir_tmp, "model file not found", "--model")


def test_not_a_gguf(chdir_tmp: Path) -> None:
    f = chdir_tmp / "model.gguf"
    f.write_text("this is not a model")
    _fails_cleanly(["run", "--model", str(f)], chdir_tmp, "not a GGUF file")


def test_truncated_gguf(chdir_tmp: Path, demo_model: Path) -> None:
    f = chdir_tmp / "cut.gguf"
    f.write_bytes(demo_model.read_bytes()[:20_000_000])
    _fails_cleanly(["run", "--model", str(f)], chdir_tmp, "truncated", "download it again")


def test_unknown_key_in_search_space(chdir_tmp: Path, demo_model: Path) -> None:
    s = chdir_tmp / "space.yaml"
    s.write_text("version: 1\nn_gpu_layer: {low: 0, high: 5}\n")
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--search-space", str(s)],
        chdir_tmp,
        "unknown key 'n_gpu_layer'",
    )


def test_bad_range_in_workload(chdir_tmp: Path, demo_model: Path) -> None:
    w = chdir_tmp / "w.yaml"
    w.write_text("system_prompt: x\nmessage: y\nrepeats: 0\n")
    _fails_cleanly(["run", "--model", str(demo_model), "--workload", str(w)], chdir_tmp, "repeats")


def test_unknown_key_in_baselines(chdir_tmp: Path, demo_model: Path) -> None:
    b = chdir_tmp / "b.yaml"
    b.write_text(
        "version: 1\nprofiles:\n  fast: {n_gpu_layers: 1, n_ctx: 2048, n_batch: 8, "
        "n_threads: 2, use_mlok: true}\n"
    )
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--baselines", str(b)], chdir_tmp, "use_mlok"
    )


def test_broken_yaml(chdir_tmp: Path, demo_model: Path) -> None:
    w = chdir_tmp / "w.yaml"
    w.write_text("system_prompt: [unclosed\n")
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--workload", str(w)], chdir_tmp, "not valid YAML"
    )


@pytest.mark.parametrize("budget", ["0GB", "six", "-2GB", "6TB"])
def test_bad_vram_budget(chdir_tmp: Path, demo_model: Path, budget: str) -> None:
    _fails_cleanly(["run", "--model", str(demo_model), "--vram-budget", budget], chdir_tmp, "size")


def test_unwritable_studies_directory(chdir_tmp: Path, demo_model: Path) -> None:
    (chdir_tmp / "studies").write_text("a file where the directory should be")
    _fails_cleanly(
        ["run", "--model", str(demo_model)], chdir_tmp, "cannot write to the studies directory"
    )


@pytest.mark.parametrize(
    "url", ["nonsense", "sqlite:///:memory:", "postgresql+psycopg2://u:p@127.0.0.1:1/db"]
)
def test_bad_storage_url(chdir_tmp: Path, demo_model: Path, url: str) -> None:
    _fails_cleanly(["run", "--model", str(demo_model), "--storage", url], chdir_tmp, "storage")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--trials", "0", "--trials"),
        ("--latency", "hot", "--latency"),
        ("--prefer", "fastest", "--prefer"),
        ("--trial-timeout", "0", "--trial-timeout"),
    ],
)
def test_bad_options(
    chdir_tmp: Path, demo_model: Path, option: str, value: str, expected: str
) -> None:
    _fails_cleanly(["run", "--model", str(demo_model), option, value], chdir_tmp, expected)


def test_export_without_a_study(chdir_tmp: Path) -> None:
    _fails_cleanly(["export"], chdir_tmp, "no study database", "dm-tune run")


@pytest.mark.parametrize(
    ("min_ctx", "expected"),
    [
        ("lots", "--min-ctx must be a number of tokens or 'worst'"),
        ("0", "--min-ctx must be at least 1 token"),
        ("1024", "--min-ctx 1024 is below what the app needs"),
        ("16384", "above the model's trained context (8192 tokens)"),
    ],
)
def test_bad_min_ctx(chdir_tmp: Path, demo_model: Path, min_ctx: str, expected: str) -> None:
    """Checked against the model's own token counts, so after the probe's progress line."""
    space = chdir_tmp / "space.yaml"  # offers 16384, so only the model's trained context refuses it
    space.write_text("version: 1\nn_ctx: {choices: [1024, 2048, 4096, 8192, 16384]}\n")
    args = ["run", "--model", str(demo_model), "--search-space", str(space), "--min-ctx", min_ctx]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], r.stderr
    assert "Traceback" not in r.output
    assert not (chdir_tmp / "studies" / "dm-tune.db").exists()
    assert not list((chdir_tmp / "configs").glob("profiles/*.yaml"))
