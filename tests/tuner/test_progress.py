"""The progress lines and the same-failure guard (`Progress`, an Optuna callback) on a real SQLite
study. Each trial's outcome is written by the study's own record writers from a planned result,
as the objective writes a child's (no child runs: what a child measures is not the subject)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna

from objectives.launch import ChildResult
from objectives.metrics import TrialMetrics
from tuner.space import key_of
from tuner.study import DIRECTIONS, Progress, constraint_values, set_constraints
from tuner.study._study import TrialFailed
from tuner.study._trial_record import (
    objective_values,
    record_child,
    record_outcome,
    record_prediction,
    record_settings,
)
from tuner.vram import VramGuard, VramPrediction

BUDGET_MB = 6000.0
Plan = Callable[[optuna.Trial], list[float]]


def _settings(ngl: int) -> dict[str, object]:
    return {"n_threads": 4, "n_batch": 512, "n_ctx": 4096, "n_gpu_layers": ngl}


def ok(ngl: int, tok_s: float, ttft_ms: float, vram_mb: float) -> Plan:
    def run(trial: optuna.Trial) -> list[float]:
        params = _settings(ngl)
        record_settings(trial, params, key_of(params))
        metrics = TrialMetrics(
            gen_tok_s=tok_s,
            ttft_ms=ttft_ms,
            prompt_tok_s=500.0,
            warm_ttft_ms=None,
            load_s=1.0,
            peak_rss_mb=900.0,
            n_prompt_tokens=60,
            n_generated=16,
            gen_tok_s_cv=0.01,
            ttft_ms_cv=0.01,
            vram_mb=vram_mb,
            vram_source="process",
        )
        record_child(trial, ChildResult("ok", "", metrics=metrics, wall_s=3.0))
        set_constraints(trial, constraint_values(vram_mb, BUDGET_MB, 4096, 4096, "process"))
        return objective_values(metrics.to_dict(), "cold")

    return run


def pruned(ngl: int, reason: str) -> Plan:
    def run(trial: optuna.Trial) -> list[float]:
        params = _settings(ngl)
        record_settings(trial, params, key_of(params))
        record_child(trial, ChildResult("pruned", reason, wall_s=1.0))
        raise optuna.TrialPruned(reason)

    return run


def over_budget_predicted(ngl: int) -> Plan:
    def run(trial: optuna.Trial) -> list[float]:
        params = _settings(ngl)
        record_settings(trial, params, key_of(params))
        guard = VramGuard(info=None, budget_mb=BUDGET_MB, overhead_mb=300.0)
        pred = VramPrediction(9000.0, 800.0, 400.0, 300.0, 10500.0)
        record_prediction(trial, pred)
        record_outcome(trial, "over_budget_predicted", guard.skip_reason(pred))
        raise optuna.TrialPruned("predicted over the VRAM budget")

    return run


def oom(ngl: int) -> Plan:
    def run(trial: optuna.Trial) -> list[float]:
        params = _settings(ngl)
        record_settings(trial, params, key_of(params))
        reason = "out of memory while loading (cudaMalloc failed)"
        record_child(trial, ChildResult("oom", reason, returncode=1, phase="load", wall_s=2.0))
        raise TrialFailed(reason)

    return run


class _Run:
    """A real study in a SQLite file, and the lines its Progress echoes."""

    def __init__(self, tmp_path: Path, total: int) -> None:
        self.study = optuna.create_study(
            storage=f"sqlite:///{tmp_path}/dm-tune.db", study_name="p", directions=DIRECTIONS
        )
        self.lines: list[str] = []
        self.progress = Progress(
            self.study,
            total=total,
            start_count=0,
            latency="cold",
            prefer="balanced",
            max_same_failures=3,
            echo=self.lines.append,
        )

    def trials(self, *plans: Plan) -> list[str]:
        """Runs one trial per plan (the study may stop earlier); the lines they echoed."""
        before = len(self.lines)
        queue = list(plans)
        self.study.optimize(
            lambda t: queue.pop(0)(t),
            n_trials=len(plans),
            catch=(TrialFailed,),
            callbacks=[self.progress],
        )
        return self.lines[before:]


def test_an_ok_trial_shows_its_figures_and_is_the_best(tmp_path: Path) -> None:
    run = _Run(tmp_path, total=10)
    (line,) = run.trials(ok(20, 42.0, 180.0, 4100.0))
    assert line.startswith("[1/10] ") and " elapsed, ETA " in line
    assert line.endswith(
        "#0 thr=4 batch=512 ctx=4096 ngl=20 -> 42.0 tok/s, cold TTFT 180 ms, VRAM 4100 MB"
        " | best #0: 42.0 tok/s, 180 ms"
    )


def test_a_pruned_trial_shows_why(tmp_path: Path) -> None:
    run = _Run(tmp_path, total=4)
    why = "dominated after its first answer: 9.0 tok/s, 700 ms"
    (line,) = run.trials(pruned(5, why))
    assert line.startswith("[1/4] ") and line.endswith(
        f"#0 thr=4 batch=512 ctx=4096 ngl=5 -> PRUNED: {why}"
    )


def test_an_over_budget_prediction_shows_the_predicted_need(tmp_path: Path) -> None:
    run = _Run(tmp_path, total=4)
    _, line = run.trials(ok(10, 30.0, 250.0, 3000.0), over_budget_predicted(40))
    assert line.startswith("[2/4] ")
    assert (
        "#1 thr=4 batch=512 ctx=4096 ngl=40 -> OVER_BUDGET_PREDICTED: predicted peak 10500 MB"
        in line
    )
    assert line.endswith("not loaded | best #0: 30.0 tok/s, 250 ms")  # the best stays


def test_the_best_marker_moves_only_to_a_better_feasible_trial(tmp_path: Path) -> None:
    run = _Run(tmp_path, total=4)
    lines = run.trials(
        ok(10, 30.0, 250.0, 3000.0),
        ok(40, 80.0, 90.0, 9000.0),  # faster, but needs more than the budget
        ok(20, 45.0, 200.0, 4200.0),  # faster and quicker, within the budget
        ok(15, 35.0, 230.0, 3600.0),  # worse on both: the best stays
    )
    assert [ln.split(" | best ")[1] for ln in lines] == [
        "#0: 30.0 tok/s, 250 ms",
        "#0: 30.0 tok/s, 250 ms",
        "#2: 45.0 tok/s, 200 ms",
        "#2: 45.0 tok/s, 200 ms",
    ]


def test_repeated_ooms_at_the_start_stop_the_study_with_the_hint(tmp_path: Path) -> None:
    run = _Run(tmp_path, total=10)
    lines = run.trials(*(oom(40 - i) for i in range(6)))
    assert len(lines) == 3 and len(run.study.trials) == 3  # stopped after the third
    assert all("-> OOM: out of memory while loading" in ln for ln in lines)
    assert " | best " not in lines[-1]  # nothing feasible yet
    assert run.progress.abort_reason == (
        "3 trials in a row ran out of memory (out of memory while loading (cudaMalloc failed)); "
        "lower the n_ctx choices in search_space.yaml or free memory, then run again"
    )


def test_an_ok_trial_between_failures_resets_the_guard(tmp_path: Path) -> None:
    run = _Run(tmp_path, total=10)
    run.trials(oom(40), oom(39), ok(10, 30.0, 250.0, 3000.0), oom(38), oom(37))
    assert run.progress.abort_reason is None and len(run.study.trials) == 5
