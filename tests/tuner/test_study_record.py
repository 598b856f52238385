"""The study record (tuner/study/_study_record.py): what `dm-tune run` and the confirmations store
for the whole study, read back by StudyRecord.from_study, and an older study's record."""

from __future__ import annotations

import shutil
from dataclasses import fields
from pathlib import Path

import optuna

from tuner.study import DIRECTIONS, StudyRecord
from tuner.study._study_record import record_confirmations, record_study

ROOT = Path(__file__).resolve().parents[2]
OLD_CPU_DB = ROOT / "docs/benchmarks/data/cpu-demo.db"
RECORD = StudyRecord(
    model={"path": "/models/m.gguf", "file": "m.gguf", "size_bytes": 1000},
    hardware={"cpu": "test CPU", "gpus": [{"name": "GPU", "total_mb": 24000}]},
    llama_cpp_version="0.3.9",
    gpu_offload=True,
    workload_spec={"repeats": 3},
    confirm_spec={"repeats": 3, "next_turn": True},
    context_floor={"min_ctx": 2048},
    objectives=["gen_tok_s", "cold_ttft_ms"],
    settings={"vram_budget_mb": 8000.0, "latency": "cold"},
)


def test_a_new_study_round_trips_through_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=url, study_name="s", directions=DIRECTIONS)
    record_study(study, RECORD)
    confirmed = {"3": {"status": "ok", "session": 1, "values": [41.0, 110.0]}}
    refs = {"1": {"trial": 0, "status": "ok", "values": [30.0, 150.0]}}
    record_confirmations(study, confirmed, refs)
    back = StudyRecord.from_study(optuna.load_study(study_name="s", storage=url))
    assert back == StudyRecord(
        **{**RECORD.__dict__, "confirmed": confirmed, "reference_runs": refs}
    )
    assert back.gpus == [{"name": "GPU", "total_mb": 24000}]
    assert set(study.user_attrs) == {f.name for f in fields(StudyRecord)}  # named as stored


def test_settings_are_written_last() -> None:
    """A study with settings is complete: a run that died while writing left no settings."""
    study = optuna.create_study(directions=DIRECTIONS)  # in memory: attributes in written order
    record_study(study, RECORD)
    assert list(study.user_attrs)[-1] == "settings"
    assert "confirmed" not in study.user_attrs and "reference_runs" not in study.user_attrs


def test_a_study_not_made_by_dm_tune_reads_empty() -> None:
    r = StudyRecord.from_study(optuna.create_study(directions=DIRECTIONS))
    assert r == StudyRecord() and r.gpus == [] and r.confirmed == {}


def test_an_older_study_reads(tmp_path: Path) -> None:
    shutil.copy(OLD_CPU_DB, tmp_path / "old.db")
    r = StudyRecord.from_study(
        optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'old.db'}")
    )
    assert r.settings is not None and r.model is not None and r.hardware is not None
    assert r.llama_cpp_version and r.gpu_offload is False and r.objectives
    assert r.workload_spec is not None and r.confirmed
    # What that dm-tune did not record yet.
    assert (r.context_floor, r.confirm_spec, r.reference_runs) == (None, None, {})
