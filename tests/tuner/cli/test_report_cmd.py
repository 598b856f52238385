"""`dm-tune report` and `dm-tune trials` in-process (CliRunner) on a recorded study (copied),
and bad input: one `error:` line, exit code 2, nothing written."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import optuna
import pytest
from report_study import make_study, recorded_copy
from typer.testing import CliRunner

from tuner.cli import app
from tuner.report import report_data
from tuner.report._html import SECTIONS, tradeoff_figure

runner = CliRunner()
GPU_DB = "gpu/run5-pressure/7b-free.db"


def _fails(args: list[str], *expected: str) -> str:
    r = runner.invoke(app, args)
    out = r.output.strip()
    assert r.exit_code == 2, out
    assert len(out.splitlines()) == 1 and out.startswith("error: "), out
    for e in expected:
        assert e in out, out
    return out


def test_report_is_one_offline_html_file(tmp_path: Path) -> None:
    url = recorded_copy(GPU_DB, tmp_path)
    out = tmp_path / "r.html"
    r = runner.invoke(app, ["report", "--storage", url, "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"Report written: {out}" in r.output
    page = out.read_text(encoding="utf-8")
    assert "<script src=" not in page and "<link" not in page  # plotly.js inlined, no CDN
    assert "Plotly.newPlot" in page and len(page) > 3_000_000
    for anchor, _ in SECTIONS:
        assert f'<section id="{anchor}">' in page
    assert "4814 GB/s" in page  # the bandwidth section at full offload
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_tradeoff_figure_holds_every_trial_with_figures(tmp_path: Path) -> None:
    url = recorded_copy(GPU_DB, tmp_path)
    d = report_data(optuna.load_study(study_name="7b-free", storage=url), storage=url)
    fig = tradeoff_figure(d)
    trial_traces = [t for t in fig.data if t.customdata is not None]
    assert sum(len(t.x) for t in trial_traces) == len(d.points) == 48
    assert any(t.name.startswith("chosen #3") for t in fig.data)


def test_report_default_name_and_a_profile_file(chdir_tmp: Path) -> None:
    _, url = make_study(chdir_tmp)
    prof = chdir_tmp / "p.yaml"
    assert runner.invoke(app, ["export", "--storage", url, "-o", str(prof)]).exit_code == 0
    r = runner.invoke(app, ["report", "--storage", url, "--profile", str(prof)])
    assert r.exit_code == 0, r.output
    page = (chdir_tmp / "synthetic-report.html").read_text(encoding="utf-8")
    assert f"tiers from profile file {prof}" in page


def test_trials_csv_round_trips(tmp_path: Path) -> None:
    url = recorded_copy(GPU_DB, tmp_path)
    r = runner.invoke(app, ["trials", "--storage", url, "--format", "csv"])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 50 + 5 + 2  # trials, confirmed candidates, side-by-side app runs
    assert [row["number"] for row in rows[:3]] == ["0", "1", "2"]
    assert rows[0]["role"] == "baseline" and rows[0]["name"] == "performance"
    assert float(rows[3]["tok_s"]) == pytest.approx(313.71, abs=0.01)
    assert {
        "n_gpu_layers",
        "flash_attn",
        "cold_ttft_ms",
        "vram_predicted_mb",
        "vram_source",
    } <= set(rows[0])
    assert sum(row["role"] == "confirmation" for row in rows) == 7


@pytest.mark.parametrize("fmt", ["json", "md", "table"])
def test_trials_other_formats_to_a_file(fmt: str, tmp_path: Path) -> None:
    url = recorded_copy("gpu/run4-issue9/issue9.db", tmp_path)
    out = tmp_path / f"t.{fmt}"
    r = runner.invoke(app, ["trials", "--storage", url, "--format", fmt, "-o", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        assert len(json.loads(text)) == 6 + 1
    elif fmt == "md":
        assert len([ln for ln in text.splitlines() if re.match(r"\| \d", ln)]) == 7
    else:
        assert len(text.splitlines()) == 2 + 7


def test_no_such_study_lists_the_studies(tmp_path: Path) -> None:
    url = recorded_copy("cpu-demo.db", tmp_path)
    _fails(["report", "--storage", url, "--study", "nope"], "no study named 'nope'", "smollm2")


def test_a_database_without_dm_tune_studies(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE notes (x)")
    _fails(["trials", "--storage", f"sqlite:///{other}"], "holds no Optuna study")
    with sqlite3.connect(other) as db:  # Optuna did not add its tables to it
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master")]
    assert names == ["notes"]
    plain = f"sqlite:///{tmp_path / 'plain.db'}"
    optuna.create_study(study_name="plain", storage=plain).optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=1
    )
    _fails(["report", "--storage", plain], "not made by `dm-tune run`")


def test_storage_that_is_missing_or_not_a_database(tmp_path: Path) -> None:
    _fails(["report", "--storage", f"sqlite:///{tmp_path / 'none.db'}"], "no study database")
    assert not (tmp_path / "none.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    _fails(["trials", "--storage", f"sqlite:///{junk}"], "is not a SQLite database")


def test_bad_output_paths_write_nothing(tmp_path: Path) -> None:
    url = recorded_copy("cpu-demo.db", tmp_path)
    _fails(["report", "--storage", url, "-o", str(tmp_path / "no" / "r.html")], "does not exist")
    _fails(["report", "--storage", url, "-o", str(tmp_path)], "is a directory")
    _fails(["trials", "--storage", url, "-o", str(tmp_path / "no" / "t.csv")], "does not exist")
    _fails(["trials", "--storage", url, "--format", "xml"], "--format must be one of")
    assert not (tmp_path / "no").exists()


def test_a_storage_password_is_never_printed() -> None:
    out = _fails(["report", "--storage", "postgresql+psycopg2://me:s3cret@127.0.0.1:9/db"])
    assert "s3cret" not in out
