"""A resumed study's VRAM guard learns from the loaded trials of the earlier run: the records
the objective reads (tuner/study/_study.py) and what VramGuard.seed makes of them. A stand-in
guard (no GPU here) records what it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState, create_trial
from stand_in_study import StandInSpace, stand_in_context

from tuner.study import DIRECTIONS, make_objective
from tuner.vram import VramGuard

PRED = {
    "weights_mb": 900.0,
    "kv_mb": 100.0,
    "compute_mb": 50.0,
    "overhead_mb": 300.0,
    "total_mb": 1350.0,
}
SETTINGS = {"n_gpu_layers": 10, "n_ctx": 4096, "flash_attn": True}


class RecordingGuard:
    def __init__(self) -> None:
        self.loaded: list[Any] = []

    def seed(self, loaded: Any) -> None:
        self.loaded = list(loaded)


def _trial(
    status: str, *, pred: bool = True, vram: float | None = 1400.0
) -> optuna.trial.FrozenTrial:
    attrs: dict[str, Any] = {
        "status": status,
        "llama_kwargs": SETTINGS,
        "metrics": {"vram_mb": vram},
    }
    if pred:
        attrs["vram_predicted"] = PRED
    ok = status == "ok"
    return create_trial(
        state=TrialState.COMPLETE if ok else TrialState.FAIL,
        values=[40.0, 120.0] if ok else None,
        user_attrs=attrs,
    )


def test_a_resume_seeds_the_guard_with_the_loaded_trials_only(tmp_path: Path) -> None:
    study = optuna.create_study(directions=DIRECTIONS)
    for t in (_trial("ok"), _trial("ok", pred=False), _trial("ok", vram=None), _trial("oom")):
        study.add_trial(t)
    ctx = stand_in_context(tmp_path, 8000.0, StandInSpace(32))
    ctx.vram_guard = RecordingGuard()
    make_objective(ctx, study, launcher=None)
    assert ctx.vram_guard.loaded == [(SETTINGS, PRED, 1400.0)]


def test_seed_learns_the_overhead_of_each_class() -> None:
    guard = VramGuard(info=None, budget_mb=8000.0, overhead_mb=250.0)
    guard.seed([(SETTINGS, PRED, 1400.0)])
    # measured 1400 against a prediction of 1050 without the overhead: 350 MB of overhead
    assert guard.overhead_for(SETTINGS) == 350.0
    assert guard.overhead_for({**SETTINGS, "flash_attn": False}) == 350.0  # no own class yet
