"""scripts/replay_pruning.py on a recorded GPU study (the 13B-class one under a 6 GB card)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from tuner.bench.replay_pruning import main, replay

ROOT = Path(__file__).resolve().parents[2]
RECORDED = ROOT / "docs/benchmarks/data/gpu/run5-pressure/13b-free.db"


@pytest.fixture
def study_db(tmp_path: Path) -> Path:
    db = tmp_path / "13b-free.db"
    shutil.copyfile(RECORDED, db)  # docs/ is never written
    return db


def test_the_current_factor_replays_what_the_study_did(study_db: Path) -> None:
    trials = optuna.load_study(study_name="13b-free", storage=f"sqlite:///{study_db}").trials
    now = replay(trials, 10.0)
    assert now.prompt_stopped == 10  # as recorded: stopped before their first token
    assert now.newly_stopped == () and now.saved_s < 10  # the poll's granularity only
    lower = replay(trials, 5.0)
    assert lower.newly_stopped == (31, 32) and lower.front_lost == ()
    assert lower.saved_s > 100
    assert replay(trials, 3.0).saved_s >= lower.saved_s


def test_the_table_and_a_missing_file(
    study_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "t.md"
    assert main([str(study_db), "--factors", "10", "5", "--out", str(out)]) == 0
    md = out.read_text(encoding="utf-8")
    assert md.count("| 13b-free |") == 2 and "| 10 (now) |" in md and "#31, #32" in md
    capsys.readouterr()
    assert main([str(tmp_path / "nope.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
