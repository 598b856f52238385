from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import IntDistribution
from optuna.trial import FrozenTrial, TrialState

from tuner.study import choose_best, pareto_front


def trial(
    number: int,
    tps: float,
    lat: float,
    *,
    over: float = -1.0,
    n_ctx: int = 2048,
    vram: float | None = 1000.0,
    state: TrialState = TrialState.COMPLETE,
) -> FrozenTrial:
    t = optuna.trial.create_trial(
        state=state,
        values=[tps, lat] if state == TrialState.COMPLETE else None,
        params={"n_ctx": n_ctx},
        distributions={"n_ctx": IntDistribution(256, 8192)},
        user_attrs={"llama_kwargs": {"n_ctx": n_ctx}, "metrics": {"vram_mb": vram}},
        system_attrs={"constraints": [over]},
    )
    t.number = number
    return t


def test_infeasible_trials_can_never_be_best() -> None:
    trials = [trial(0, 100.0, 50.0, over=10.0), trial(1, 50.0, 100.0)]
    assert choose_best(trials, "throughput").number == 1  # type: ignore[union-attr]
    assert [t.number for t in pareto_front(trials)] == [1]


def test_prefer_rules_pick_ends_or_the_knee() -> None:
    trials = [trial(0, 100.0, 400.0), trial(1, 90.0, 120.0), trial(2, 60.0, 100.0)]
    best: dict[str, Any] = {
        p: choose_best(trials, p).number
        for p in ("throughput", "latency", "balanced")  # type: ignore[union-attr]
    }
    assert best == {"throughput": 0, "latency": 2, "balanced": 1}


def test_ties_go_to_larger_context_then_smaller_vram() -> None:
    trials = [
        trial(0, 80.0, 100.0, n_ctx=2048, vram=900.0),
        trial(1, 80.0, 100.0, n_ctx=4096, vram=1200.0),
        trial(2, 80.0, 100.0, n_ctx=4096, vram=1100.0),
    ]
    assert choose_best(trials, "throughput").number == 2  # type: ignore[union-attr]


def test_no_feasible_trial_means_no_best() -> None:
    assert choose_best([trial(0, 1.0, 1.0, over=5.0)], "balanced") is None
    assert choose_best([trial(0, 0, 0, state=TrialState.FAIL)], "balanced") is None


def test_balanced_does_not_magnify_a_one_millisecond_difference() -> None:
    # measured on the H200 (docs/benchmarks/gpu.md): 330 tok/s at 64 ms vs 297 tok/s at 63 ms
    trials = [trial(0, 296.8, 63.0), trial(45, 329.9, 64.0), trial(35, 293.3, 63.0)]
    assert choose_best(trials, "balanced").number == 45  # type: ignore[union-attr]
