"""The commands printed at the end of `dm-tune run` and `dm-tune export`."""

from __future__ import annotations

from pathlib import Path

import optuna
from report_study import make_study
from typer.testing import CliRunner

from tuner.cli import app, inspect_commands
from tuner.study import DEFAULT_STORAGE


def test_defaults_are_left_out(chdir_tmp: Path) -> None:
    assert inspect_commands(DEFAULT_STORAGE, "s") == [
        "dm-tune report --study s",
        "dm-tune dashboard",
    ]
    assert not (chdir_tmp / "studies").exists()  # nothing created to look


def test_the_only_study_needs_no_name_and_passwords_are_masked(tmp_path: Path) -> None:
    _, url = make_study(tmp_path)
    assert inspect_commands(url, "synthetic") == [
        f"dm-tune report --storage {url}",
        f"dm-tune dashboard --storage {url}",
    ]
    optuna.create_study(study_name="other", storage=url)
    assert inspect_commands(url, "synthetic")[0].endswith("--study synthetic")
    pg = inspect_commands("postgresql://me:s3cret@db.example/dm", "a b")
    assert pg[0] == "dm-tune report --storage 'postgresql://me:***@db.example/dm' --study 'a b'"
    assert all("s3cret" not in line for line in pg)


def test_export_ends_with_the_report_command(tmp_path: Path) -> None:
    _, url = make_study(tmp_path)
    r = CliRunner().invoke(app, ["export", "--storage", url, "-o", str(tmp_path / "p.yaml")])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[-2:] == [
        f"Inspect: dm-tune report --storage {url}",
        f"Inspect: dm-tune dashboard --storage {url}",
    ]
