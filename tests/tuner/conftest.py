"""Fixtures for the profile tests: fabricated trials (data, as Optuna stores them) and files.

Trials are made with optuna.trial.create_trial and added to a real in-memory study, so they carry
real numbers, states and constraints; their measurements are invented for the selection rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from profile_data import BUDGET_MB, MODEL, PROVENANCE, MakeTrial

from tuner.profile import Profile
from tuner.profile.build import build_profile, write_profile
from tuner.vram import over_budget_mb


@pytest.fixture
def make_trial() -> Iterator[MakeTrial]:
    """Adds a trial to one in-memory study and returns it as stored (numbers count from 0)."""
    study = optuna.create_study(directions=["maximize", "minimize"])

    def make(
        tok_s: float,
        ttft_ms: float,
        vram_mb: float | None,
        ngl: int,
        *,
        n_ctx: int = 2048,
        state: TrialState = TrialState.COMPLETE,
        over_budget: bool | None = None,
        **settings: Any,
    ) -> FrozenTrial:
        constraint = over_budget_mb(vram_mb, BUDGET_MB)
        if over_budget is not None:
            constraint = 100.0 if over_budget else -100.0
        kwargs = {
            "n_gpu_layers": ngl,
            "n_ctx": n_ctx,
            "n_batch": 256,
            "n_threads": 2,
            "use_mlock": False,
            **settings,
        }
        samples = [
            {
                "gen_tok_s": tok_s * f,
                "ttft_ms": ttft_ms / f,
                "prompt_tok_s": 100.0,
                "warm_ttft_ms": ttft_ms / 2,
            }
            for f in (0.98, 1.0, 1.02)
        ]
        metrics = {
            "gen_tok_s": tok_s,
            "ttft_ms": ttft_ms,
            "warm_ttft_ms": ttft_ms / 2,
            "gen_tok_s_cv": 0.02,
            "ttft_ms_cv": 0.02,
            "samples": samples,
            "vram_mb": vram_mb,
            "vram_source": "process" if vram_mb is not None else None,
        }
        done = state == TrialState.COMPLETE
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                values=[tok_s, ttft_ms] if done else None,
                user_attrs={"llama_kwargs": kwargs, "metrics": metrics, "status": "ok"},
                system_attrs={"constraints": [constraint]},
            )
        )
        return study.get_trials(deepcopy=False)[-1]

    yield make


@pytest.fixture
def gpu_trials(make_trial: MakeTrial) -> list[FrozenTrial]:
    """A GPU study: one CPU trial, three offload levels, one over budget, one failed, one
    dominated. Expected tiers: performance=#1, balanced=#2, low_vram=#3, cpu_fallback=#0."""
    return [
        make_trial(20, 900, 150, 0),
        make_trial(80, 200, 5000, 31, n_ctx=4096, flash_attn=True),
        make_trial(50, 350, 4000, 20),
        make_trial(35, 500, 2500, 10),
        make_trial(90, 150, 7000, 31),
        make_trial(0, 0, None, 31, state=TrialState.FAIL),
        make_trial(30, 600, 2000, 8),
    ]


@pytest.fixture
def gpu_profile(gpu_trials: list[FrozenTrial]) -> Profile:
    return build_profile(
        gpu_trials,
        model=MODEL,
        provenance=PROVENANCE,
        budget_mb=BUDGET_MB,
        prefer="balanced",
        gpu_present=True,
    )


@pytest.fixture
def profile_path(gpu_profile: Profile, tmp_path: Path) -> Path:
    path = tmp_path / "profile.yaml"
    write_profile(path, gpu_profile)
    return path
