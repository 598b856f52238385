"""The study loop (`run_study`, its objective and Progress) on a real SQLite study, each trial a
real child process: stand-ins for llama.cpp (tests/stand_ins) that write a canned result,
crash, or stop the run. The run's inputs are tests/tuner/stand_in_run.py's."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from stand_in_run import STUDY, run_context, storage_url

from objectives.launch import ColdLauncher
from tests.conftest import stand_in
from tuner.study import DIRECTIONS, TrialRecord, counted_trials
from tuner.study._study import RunResult, run_study


def _run(
    tmp_path: Path, workload: Path, space: Path, trials: int, child: str = "canned"
) -> tuple[RunResult, list[str]]:
    lines: list[str] = []
    ctx = run_context(tmp_path, workload, space, trials=trials)
    launcher = ColdLauncher(stand_in(child), sample_gpu=False)
    return run_study(ctx, launcher, lines.append), lines


def _stored(tmp_path: Path) -> list[FrozenTrial]:
    """The trials as the database file holds them (a fresh reader, not the run's study)."""
    return optuna.load_study(study_name=STUDY, storage=storage_url(tmp_path)).get_trials()


def _enqueue(tmp_path: Path, *settings: dict[str, Any]) -> None:
    """Trials the study runs first, in this order (the study is made before the run opens it)."""
    study = optuna.create_study(
        storage=storage_url(tmp_path), study_name=STUDY, directions=DIRECTIONS
    )
    for s in settings:
        study.enqueue_trial({"n_threads": 1, "n_ctx": 256, "n_gpu_layers": 0, **s})


def test_a_run_stops_at_exactly_the_trials_asked_for(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    result, lines = _run(tmp_path, quick_workload, small_space, trials=3)
    trials = _stored(tmp_path)
    assert result.ran == 3 and not result.interrupted and result.aborted is None
    assert len(trials) == 3 and len(counted_trials(trials)) == 3
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [ln.split()[0] for ln in lines if ln.startswith("[")] == ["[1/3]", "[2/3]", "[3/3]"]
    assert lines[-1].startswith("Ran 3 trial(s) in ")


def test_a_resume_runs_only_the_missing_trials_then_nothing_when_full(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    _run(tmp_path, quick_workload, small_space, trials=2)
    more, lines = _run(tmp_path, quick_workload, small_space, trials=3)
    assert f"Resuming study '{STUDY}': 2 trials kept, 1 to run." in lines
    assert more.ran == 1 and [ln.split()[0] for ln in lines if ln.startswith("[")] == ["[3/3]"]
    full, lines = _run(tmp_path, quick_workload, small_space, trials=3)
    assert full.ran == 0
    assert lines == [
        f"Study '{STUDY}' already has 3 trials (target 3); nothing to run. "
        "Use a larger --trials to extend it."
    ]
    assert len(_stored(tmp_path)) == 3


@pytest.mark.skipif(os.name != "posix", reason="the stand-in sends its run SIGTERM")
def test_an_interrupted_trial_is_re_run_with_its_settings_on_the_next_run(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    stopped, _ = _run(tmp_path, quick_workload, small_space, trials=2, child="stop_the_run")
    assert stopped.interrupted and stopped.exit_code == 143 and stopped.ran == 0
    (cut,) = _stored(tmp_path)
    record = TrialRecord.from_frozen(cut)
    assert cut.state == TrialState.FAIL and record.status == "interrupted"
    assert record.reason is not None and "SIGTERM" in record.reason
    assert counted_trials([cut]) == []

    again, lines = _run(tmp_path, quick_workload, small_space, trials=2)
    assert "Re-running 1 trial(s) that an earlier run left unfinished." in lines
    assert again.ran == 2
    trials = _stored(tmp_path)
    redo = trials[1]
    assert TrialRecord.from_frozen(redo).retry_of == cut.number
    assert redo.state == TrialState.COMPLETE and redo.params == cut.params
    assert [t.number for t in counted_trials(trials)] == [1, 2]


def test_a_crashing_child_fails_its_trial_with_the_reason_and_the_study_goes_on(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    _enqueue(tmp_path, {"n_batch": 128}, {"n_batch": 32}, {"n_batch": 128, "n_threads": 2})
    result, lines = _run(tmp_path, quick_workload, small_space, trials=3, child="crash_at_batch_32")
    assert result.ran == 3 and result.aborted is None and not result.interrupted
    ok, crashed, after = _stored(tmp_path)
    assert ok.state == after.state == TrialState.COMPLETE
    assert crashed.state == TrialState.FAIL
    record = TrialRecord.from_frozen(crashed)
    assert record.status == "crashed" and record.reason is not None
    assert "SIGSEGV" in record.reason and record.phase == "load"
    (line,) = [ln for ln in lines if ln.startswith("[2/3]")]
    assert f"-> CRASHED: {record.reason}" in line
    assert len(counted_trials([ok, crashed, after])) == 3  # a failure is a trial of the study


def test_identical_settings_are_reused_not_measured_again(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    _enqueue(tmp_path, {"n_batch": 128}, {"n_batch": 128})
    result, lines = _run(tmp_path, quick_workload, small_space, trials=2)
    first, twin = _stored(tmp_path)
    record = TrialRecord.from_frozen(twin)
    assert result.ran == 2 and twin.state == TrialState.COMPLETE
    assert record.status == "reused" and record.reused_from == first.number
    assert record.reason == f"same settings as trial {first.number}"
    assert twin.values == first.values and record.metrics == TrialRecord.from_frozen(first).metrics
    assert record.wall_s is None  # no child ran for it
    assert twin.constraints == first.constraints
    assert any(ln.startswith("[2/2]") and "(reused trial 0)" in ln for ln in lines)
