"""Several workers on one study (tuner/study/_share.py): `--trials` is the study's total, and an
enqueued trial runs once. The rank rule on a real SQLite study, then `run_study` beside another
worker's running trials."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from stand_in_run import STUDY, run_context, storage_url

from objectives.launch import ColdLauncher
from tests.conftest import stand_in
from tuner.errors import UserError
from tuner.machine import Hardware
from tuner.study import DIRECTIONS, StudyRecord, TrialRecord, counted_trials, enqueue
from tuner.study._share import unneeded
from tuner.study._study import run_study
from tuner.study._trial_record import enqueue_retry

PARAMS = {"n_threads": 1, "n_ctx": 256, "n_gpu_layers": 0}


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(
        storage=storage_url(tmp_path), study_name=STUDY, directions=DIRECTIONS
    )


def _finish(study: optuna.Study, trial: optuna.Trial, status: str | None = None) -> None:
    if status is not None:
        trial.set_user_attr("status", status)
    study.tell(trial, [10.0, 100.0])


def test_a_trial_ranked_at_the_total_is_surplus_running_ones_count(tmp_path: Path) -> None:
    study = _study(tmp_path)
    done = study.ask()
    _finish(study, done)
    running = [study.ask(), study.ask()]  # other workers' trials, still measuring
    late = study.ask()
    trials = study.get_trials()
    assert unneeded(trials, running[1].number, 3) is None  # rank 2
    assert unneeded(trials, late.number, 3) == "surplus"  # rank 3
    assert unneeded(trials, late.number, 4) is None
    assert [t.number for t in counted_trials(trials)] == [done.number]


def test_surplus_and_duplicate_trials_neither_count_nor_rank(tmp_path: Path) -> None:
    study = _study(tmp_path)
    first = study.ask()
    _finish(study, first)
    extra = study.ask()
    study.tell(extra, state=TrialState.FAIL)
    trials = study.get_trials()
    assert unneeded(trials, extra.number, 1) == "surplus"
    # recorded as surplus, it no longer ranks a later trial
    marked = study.ask()
    marked.set_user_attr("status", "surplus")
    study.tell(marked, state=TrialState.FAIL)
    nxt = study.ask()
    trials = study.get_trials()
    assert unneeded(trials, nxt.number, 3) is None  # ranks: first, extra (failed: counts) -> 2
    assert [t.number for t in counted_trials(trials)] == [first.number, extra.number]


def test_an_enqueued_start_carried_by_an_earlier_trial_is_a_duplicate(tmp_path: Path) -> None:
    study = _study(tmp_path)
    enqueue(study, PARAMS, {"start": "fast"})
    enqueue(study, PARAMS, {"start": "fast"})  # a second worker enqueued it too
    enqueue(study, PARAMS, {"baseline": "balanced"})
    one, two, three = study.ask(), study.ask(), study.ask()
    trials = study.get_trials()
    assert unneeded(trials, one.number, 9) is None
    assert unneeded(trials, two.number, 9) == "duplicate"
    assert unneeded(trials, three.number, 9) is None
    assert unneeded(trials, three.number, 2) is None  # the duplicate does not rank it


def test_the_retry_of_an_interrupted_trial_counts_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    enqueue(study, PARAMS, {"baseline": "balanced"})
    cut = study.ask()
    cut.set_user_attr("status", "interrupted")
    study.tell(cut, state=TrialState.FAIL)
    frozen = study.get_trials()[cut.number]
    enqueue_retry(study, frozen)
    enqueue_retry(study, frozen)  # two workers re-queued it
    redo, again = study.ask(), study.ask()
    trials = study.get_trials()
    assert TrialRecord.from_frozen(trials[redo.number]).retry_of == cut.number
    assert unneeded(trials, redo.number, 1) is None  # the interrupted one does not rank it
    assert unneeded(trials, again.number, 1) == "duplicate"
    _finish(study, redo)
    assert [t.number for t in counted_trials(study.get_trials())] == [redo.number]


def test_a_worker_whose_trial_is_one_too_many_ends_it_unmeasured_and_stops(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    study = _study(tmp_path)
    held = [study.ask(), study.ask()]  # another worker measures these
    lines: list[str] = []
    ctx = run_context(tmp_path, quick_workload, small_space, trials=2)
    result = run_study(ctx, ColdLauncher(stand_in("canned"), sample_gpu=False), lines.append)
    assert result.ran == 0 and not result.interrupted and result.aborted is None
    assert "The study has its 2 trials; this worker stops." in lines
    assert not any(ln.startswith("[") for ln in lines)
    trials = study.get_trials()
    (surplus,) = [t for t in trials if t.number not in {h.number for h in held}]
    record = TrialRecord.from_frozen(surplus)
    assert surplus.state == TrialState.FAIL and record.status == "surplus"
    assert record.llama_kwargs is None and record.wall_s is None  # nothing measured
    assert counted_trials(trials) == []


def _run(tmp_path: Path, workload: Path, space: Path, trials: int, **ctx_changes: Any) -> Any:
    ctx = dataclasses.replace(run_context(tmp_path, workload, space, trials=trials), **ctx_changes)
    lines: list[str] = []
    return run_study(ctx, ColdLauncher(stand_in("canned"), sample_gpu=False), lines.append)


def test_a_worker_on_another_machine_type_is_refused_and_writes_nothing(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    _run(tmp_path, quick_workload, small_space, trials=1)
    before = optuna.load_study(study_name=STUDY, storage=storage_url(tmp_path))
    attrs, n = dict(before.user_attrs), len(before.trials)
    assert StudyRecord.from_study(before).machine == {
        "gpus": [],
        "driver": None,
        "cpu": "stand-in CPU",
        "logical_cores": 2,
        "llama_cpp_version": "0.0.0-stand-in",
        "gpu_offload": False,
        "model_sha256": "0" * 64,
    }
    other = Hardware("other CPU", 2, 2, 4096.0, "Linux", ())
    with pytest.raises(UserError) as err:
        _run(tmp_path, quick_workload, small_space, trials=2, hardware=other)
    assert str(err.value) == (
        "this machine (no GPU, other CPU 2 threads, llama-cpp-python 0.0.0-stand-in CPU-only "
        "build) differs from the study's (no GPU, stand-in CPU 2 threads, llama-cpp-python "
        f"0.0.0-stand-in CPU-only build): a study holds one machine type; run with --study "
        f"{STUDY}-other-2t for this one"
    )
    after = optuna.load_study(study_name=STUDY, storage=storage_url(tmp_path))
    assert dict(after.user_attrs) == attrs and len(after.trials) == n


def test_a_study_made_before_machines_were_recorded_takes_any_machine(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    _run(tmp_path, quick_workload, small_space, trials=1)
    study = optuna.load_study(study_name=STUDY, storage=storage_url(tmp_path))
    study._storage.set_study_user_attr(study._study_id, "machine", None)  # an older dm-tune's
    other = Hardware("other CPU", 2, 2, 4096.0, "Linux", ())
    result = _run(tmp_path, quick_workload, small_space, trials=2, hardware=other)
    assert result.ran == 1
    again = optuna.load_study(study_name=STUDY, storage=storage_url(tmp_path))
    assert StudyRecord.from_study(again).machine is None  # left as it was


WORKER = Path(__file__).parent / "worker_proc.py"


def start_worker(
    url: str, tmp_path: Path, workload: Path, total: int, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """A worker process (worker_proc.py) on the study at `url`, its output (stdout and stderr)
    piped; `env` is added to this process's environment."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), url, str(tmp_path), str(workload), str(total)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **(env or {})},
    )


def three_workers(url: str, tmp_path: Path, workload: Path, total: int = 9) -> None:
    """Three worker processes started together on the study at `url`: the study ends with
    exactly `total` counted trials, each app profile measured once, and every worker exits 0.
    (Also run on PostgreSQL by test_workers_postgres.py.)"""
    procs = [start_worker(url, tmp_path, workload, total) for _ in range(3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
        assert "database is locked" not in out, out
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials()
    assert len(counted_trials(trials)) == total, "\n".join(outs)
    measured = [TrialRecord.from_frozen(t) for t in counted_trials(trials)]
    roles = [r.role for r in measured if r.role[0] != "sampled"]
    assert sorted(roles) == [
        ("baseline", "balanced"),
        ("baseline", "cpu_fallback"),
        ("baseline", "performance"),
    ]
    assert all(t.state != TrialState.RUNNING for t in trials)
    progress = [ln.split()[0] for out in outs for ln in out.splitlines() if ln.startswith("[")]
    assert len(progress) == total and all(p.endswith(f"/{total}]") for p in progress)


def test_three_workers_on_one_sqlite_study_run_the_total_once(
    tmp_path: Path, quick_workload: Path
) -> None:
    three_workers(storage_url(tmp_path), tmp_path, quick_workload)
