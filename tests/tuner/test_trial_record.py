"""The trial record (tuner/study/_trial_record.py, _constraints.py): what the writers store in a
real Optuna study (SQLite file and in-memory), read back by TrialRecord.from_frozen, and the
studies of an older dm-tune (docs/benchmarks/data) read without failing."""

from __future__ import annotations

import shutil
from dataclasses import fields, replace
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from objectives.launch import ChildResult
from objectives.metrics import Sample, TrialMetrics
from objectives.nvml import GpuReading
from tuner.study import (
    CONSTRAINT_KEY,
    CTX_CONSTRAINT_KEY,
    DIRECTIONS,
    LEGACY_CONSTRAINTS_ATTR,
    TrialRecord,
    constraint_values,
    enqueue,
    set_constraints,
)
from tuner.study._constraints import copy_constraints, with_vram_constraint
from tuner.study._trial_record import (
    enqueue_retry,
    mark_interrupted,
    record_below_floor,
    record_buffers,
    record_child,
    record_outcome,
    record_owner,
    record_prediction,
    record_prediction_error,
    record_reuse,
    record_settings,
    record_spill,
    record_unmeasured,
    record_watch,
    with_confirmation,
    with_spill,
)
from tuner.vram import UNMEASURED_ATTR, VramPrediction

ROOT = Path(__file__).resolve().parents[2]
OLD_GPU_DB = ROOT / "docs/benchmarks/data/gpu/gpu-h200.db"
OLD_CPU_DB = ROOT / "docs/benchmarks/data/cpu-demo.db"
SETTINGS = {"n_gpu_layers": 10, "n_ctx": 2048, "n_batch": 512}
PRED = VramPrediction(
    weights_mb=900.0, kv_mb=100.0, compute_mb=50.0, overhead_mb=300.0, total_mb=1350.0
)


def _metrics(vram_mb: float | None = 1400.0) -> TrialMetrics:
    sample = Sample(gen_tok_s=40.0, ttft_ms=120.0, prompt_tok_s=900.0, warm_ttft_ms=30.0)
    m = TrialMetrics.from_samples(
        [sample], load_s=1.5, peak_rss_mb=800.0, n_prompt_tokens=300, n_generated=64
    )
    return replace(m, vram_mb=vram_mb, vram_source="process")


def _ok_child() -> ChildResult:
    gpu = GpuReading(1400.0, "process", device_used_mb=9000.0, device_total_mb=24000.0)
    return ChildResult("ok", "", metrics=_metrics(), gpu=gpu, wall_s=12.3456)


def _sqlite_study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(storage=_url(tmp_path), directions=DIRECTIONS)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'record.db'}"


def test_a_measured_trial_round_trips_through_sqlite(tmp_path: Path) -> None:
    study = _sqlite_study(tmp_path)
    enqueue(study, {"n_gpu_layers": 10}, {"baseline": "performance"}, app_n_ctx=1024)

    def objective(trial: optuna.Trial) -> list[float]:
        record_owner(trial)
        running = TrialRecord.from_running(trial)
        assert (running.role, running.app_n_ctx) == (("baseline", "performance"), 1024)
        trial.suggest_int("n_gpu_layers", 0, 32)
        record_settings(trial, SETTINGS, "key-1")
        record_prediction(trial, PRED)
        record_below_floor(trial, "n_ctx 1024 is below the context floor 2048")
        record_child(trial, _ok_child())
        record_buffers(trial, {"CUDA0": {"compute": 48.0}})
        record_prediction_error(trial, -3.57)
        record_unmeasured(trial, "no VRAM reading")
        record_spill(trial, "card full and slow")
        set_constraints(trial, constraint_values(1400.0, 8000.0, 1024, 2048))
        return [40.0, 120.0]

    study.optimize(objective, n_trials=1)
    t = optuna.load_study(study_name=study.study_name, storage=_url(tmp_path)).trials[0]
    r = TrialRecord.from_frozen(t)
    assert r.state == TrialState.COMPLETE
    assert r.role == ("baseline", "performance") and r.start is None
    assert r.app_n_ctx == 1024 and r.retry_of is None
    assert r.owner is not None and "host" in r.owner
    assert r.llama_kwargs == SETTINGS and r.settings == SETTINGS and r.key == "key-1"
    assert r.params == {"n_gpu_layers": 10}
    assert r.vram_predicted_mb == 1350.0 and r.vram_predicted == PRED.to_dict()
    assert r.below_floor is not None and "below the context floor" in r.below_floor
    assert (r.status, r.reason, r.outcome, r.wall_s) == ("ok", "", "ok", 12.346)
    assert r.metrics["gen_tok_s"] == 40.0 and r.vram_mb == 1400.0
    assert r.gpu is not None and r.gpu["device_total_mb"] == 24000.0
    assert r.llama_buffers == {"CUDA0": {"compute": 48.0}}
    assert r.vram_prediction_error_pct == -3.57
    assert r.vram_unmeasured == "no VRAM reading" and r.spill == "card full and slow"
    assert (r.returncode, r.phase, r.stderr_tail, r.watch, r.confirmed) == (
        None,
        None,
        None,
        None,
        False,
    )
    # The stored format the dashboard and older studies hold: these keys, these names.
    assert set(t.user_attrs) == {
        "baseline",
        "app_n_ctx",
        "owner",
        "llama_kwargs",
        "key",
        "vram_predicted_mb",
        "vram_predicted",
        "below_floor",
        "status",
        "reason",
        "wall_s",
        "metrics",
        "gpu",
        "llama_buffers",
        "vram_prediction_error_pct",
        UNMEASURED_ATTR,
        "spill",
    }
    want = constraint_values(1400.0, 8000.0, 1024, 2048)
    assert {k: t.constraints[k] for k in want} == want and want[CTX_CONSTRAINT_KEY] == 1024.0
    assert t.system_attrs[LEGACY_CONSTRAINTS_ATTR] == [t.constraints[CONSTRAINT_KEY], 1024.0]


def test_a_failed_and_a_pruned_trial() -> None:
    study = optuna.create_study(directions=DIRECTIONS)

    def fail(trial: optuna.Trial) -> list[float]:
        record_child(
            trial,
            ChildResult(
                "oom", "out of memory", returncode=-9, phase="load", stderr_tail="x" * 3000
            ),
        )
        raise RuntimeError("oom")

    def prune(trial: optuna.Trial) -> list[float]:
        record_child(trial, ChildResult("pruned", "dominated"))
        record_watch(trial, {"tokens": 9, "ttft_s": 0.5, "gen_s": 0.4})
        raise optuna.TrialPruned("dominated")

    study.optimize(fail, n_trials=1, catch=(RuntimeError,))
    study.optimize(prune, n_trials=1)
    failed, pruned = (TrialRecord.from_frozen(t) for t in study.trials)
    assert (failed.outcome, failed.returncode, failed.phase) == ("oom", -9, "load")
    assert failed.stderr_tail == "x" * 2000
    assert failed.metrics == {} and failed.vram_mb is None and failed.partial_figures is None
    assert pruned.outcome == "pruned" and pruned.returncode is None
    assert pruned.partial_figures == (pytest.approx(20.0), pytest.approx(500.0))


def test_a_trial_with_the_same_settings_takes_the_earlier_outcome() -> None:
    study = optuna.create_study(directions=DIRECTIONS)

    def first(trial: optuna.Trial) -> list[float]:
        record_settings(trial, SETTINGS, "k")
        record_child(trial, _ok_child())
        record_spill(trial, "spilled")
        set_constraints(trial, {CONSTRAINT_KEY: 5.0, CTX_CONSTRAINT_KEY: 0.0})
        return [40.0, 120.0]

    def second(trial: optuna.Trial) -> list[float]:
        record_settings(trial, SETTINGS, "k")
        assert record_reuse(trial, study.trials[0]) == "same settings as trial 0"
        return [40.0, 120.0]

    study.optimize(first, n_trials=1)
    study.optimize(second, n_trials=1)
    t = study.trials[1]
    r = TrialRecord.from_frozen(t)
    assert (r.status, r.reused_from, r.spill) == ("reused", 0, "spilled")
    assert r.metrics == TrialRecord.from_frozen(study.trials[0]).metrics
    assert (t.constraints[CONSTRAINT_KEY], t.constraints[CTX_CONSTRAINT_KEY]) == (5.0, 0.0)


def test_a_reused_failure_and_a_skip() -> None:
    study = optuna.create_study(directions=DIRECTIONS)

    def fail(trial: optuna.Trial) -> list[float]:
        record_child(trial, ChildResult("crashed", "SIGSEGV", returncode=-11, phase="load"))
        raise RuntimeError

    def again(trial: optuna.Trial) -> list[float]:
        reason = record_reuse(trial, study.trials[0])
        assert reason == "same settings as trial 0: SIGSEGV"
        raise RuntimeError

    def skip(trial: optuna.Trial) -> list[float]:
        record_outcome(trial, "over_budget_predicted", "too big")
        raise optuna.TrialPruned

    for f in (fail, again, skip):
        study.optimize(f, n_trials=1, catch=(RuntimeError,))
    again_r, skip_r = (TrialRecord.from_frozen(t) for t in study.trials[1:])
    assert (again_r.status, again_r.returncode, again_r.phase) == ("crashed", -11, "load")
    assert again_r.stderr_tail is None and again_r.reason == "same settings as trial 0: SIGSEGV"
    assert (skip_r.outcome, skip_r.reason) == ("over_budget_predicted", "too big")


def test_an_interrupted_trial_is_failed_and_retried_under_its_name(tmp_path: Path) -> None:
    study = _sqlite_study(tmp_path)
    enqueue(study, {"n_gpu_layers": 4}, {"start": "fit"}, app_n_ctx=512)
    trial = study.ask()  # RUNNING, as a killed run leaves it
    trial.suggest_int("n_gpu_layers", 0, 32)
    running = study.trials[0]
    assert mark_interrupted(study, running, "killed")
    assert not mark_interrupted(study, running, "killed")  # finished: another run got there first
    done = study.trials[0]
    assert done.state == TrialState.FAIL
    assert TrialRecord.from_frozen(done).outcome == "interrupted"
    enqueue_retry(study, done, "no heartbeat")
    retry = study.ask()
    assert retry.suggest_int("n_gpu_layers", 0, 32) == 4
    r = TrialRecord.from_running(retry)
    assert (r.retry_of, r.retry_reason, r.role, r.app_n_ctx) == (
        0,
        "no heartbeat",
        ("start", "fit"),
        512,
    )


def test_a_baseline_stopped_before_all_its_settings_were_asked_is_retried_whole(
    tmp_path: Path,
) -> None:
    # A worker killed between two suggest calls leaves only the first in `params` (seen under
    # load in the PostgreSQL kill test): its retry must still be the baseline's settings.
    study = _sqlite_study(tmp_path)
    enqueue(study, {"n_gpu_layers": 4, "n_ctx": 2048}, {"baseline": "balanced"}, app_n_ctx=2048)
    trial = study.ask()
    trial.suggest_int("n_gpu_layers", 0, 32)  # killed here, before n_ctx
    running = study.trials[0]
    assert running.params == {"n_gpu_layers": 4}
    assert mark_interrupted(study, running, "killed")
    enqueue_retry(study, study.trials[0], "killed")
    retry = study.ask()
    got = (
        retry.suggest_int("n_gpu_layers", 0, 32),
        retry.suggest_int("n_ctx", 256, 32768),
    )
    assert got == (4, 2048)  # not a random n_ctx


def test_constraints_of_a_copy_change_and_storage_does_not() -> None:
    study = optuna.create_study(directions=DIRECTIONS)

    def old(trial: optuna.Trial) -> list[float]:  # a study made before the floor: VRAM only
        trial.set_constraint(CONSTRAINT_KEY, -10.0)
        return [40.0, 120.0]

    def reused(trial: optuna.Trial) -> list[float]:
        copy_constraints(trial, study.trials[0])
        return [40.0, 120.0]

    study.optimize(old, n_trials=1)
    study.optimize(reused, n_trials=1)
    t = study.trials[1]
    assert (t.constraints[CONSTRAINT_KEY], t.constraints[CTX_CONSTRAINT_KEY]) == (-10.0, 0.0)
    assert t.system_attrs[LEGACY_CONSTRAINTS_ATTR] == [-10.0, 0.0]
    over = with_vram_constraint(t, 7.0)
    assert over.constraints[CONSTRAINT_KEY] == 7.0
    assert over.system_attrs[LEGACY_CONSTRAINTS_ATTR] == [7.0, 0.0]
    spilled = with_spill(t, "card full", 9.0)
    assert TrialRecord.from_frozen(spilled).spill == "card full"
    assert spilled.constraints[CONSTRAINT_KEY] == 9.0
    confirmed = with_confirmation(t, [41.0, 110.0], {"gen_tok_s": 41.0, "vram_mb": 5.0}, -3.0)
    c = TrialRecord.from_frozen(confirmed)
    assert (confirmed.values, c.confirmed, c.vram_mb) == ([41.0, 110.0], True, 5.0)
    assert confirmed.constraints[CONSTRAINT_KEY] == -3.0
    assert study.trials[1].constraints[CONSTRAINT_KEY] == -10.0  # the stored trial as it was
    assert TrialRecord.from_frozen(study.trials[1]).spill is None


@pytest.mark.parametrize("db", [OLD_GPU_DB, OLD_CPU_DB], ids=["gpu-h200", "cpu-demo"])
def test_an_older_study_reads(db: Path, tmp_path: Path) -> None:
    shutil.copy(db, tmp_path / "old.db")
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'old.db'}")
    records = [TrialRecord.from_frozen(t) for t in study.get_trials(deepcopy=False)]
    assert records
    baselines = [r for r in records if r.role[0] == "baseline"]
    assert baselines and all(r.role[1] for r in baselines)
    done = [r for r in records if r.status == "ok"]
    assert done and all(r.llama_kwargs and r.key and r.metrics.get("gen_tok_s") for r in done)
    # What that dm-tune did not record yet reads as None.
    assert all(r.owner is None and r.app_n_ctx is None and r.retry_of is None for r in records)
    assert all(r.vram_unmeasured is None and r.below_floor is None for r in records)
    # Every attribute it stored has its field (named as the attribute).
    keys = {k for t in study.get_trials(deepcopy=False) for k in t.user_attrs}
    assert keys <= {f.name for f in fields(TrialRecord)}
