"""A study context for running `make_objective` with stand-in trial children (no real llama.cpp):
the few fields the objective reads, and a small search space."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna

from tests.conftest import stand_in


class StandInSpace:
    """n_gpu_layers 0..layers, n_ctx 4096, (n_batch 512), n_threads 1..64, in suggest's order."""

    def __init__(self, layers: int, *, batch: bool = False) -> None:
        self.layers = layers
        self.batch = batch

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        params: dict[str, Any] = {
            "n_gpu_layers": trial.suggest_int("n_gpu_layers", 0, self.layers),
            "n_ctx": trial.suggest_categorical("n_ctx", [4096]),
        }
        if self.batch:
            params["n_batch"] = trial.suggest_categorical("n_batch", [512])
        params["n_threads"] = trial.suggest_int("n_threads", 1, 64)
        return params


def stand_in_context(
    tmp_path: Path, budget_mb: float, space: StandInSpace, *, offload: bool = True
) -> Any:
    """What make_objective reads of a prepared study, the trial child being the canned stand-in."""
    settings = SimpleNamespace(
        vram_budget_mb=budget_mb,
        trial_timeout_s=60.0,
        child_argv=stand_in("canned"),
        prune=False,
        latency="cold",
    )
    return SimpleNamespace(
        settings=settings,
        vram_guard=None,
        probe=SimpleNamespace(gpu_offload=offload),
        space=space,
        model=SimpleNamespace(path=tmp_path / "model.gguf"),
        floor=SimpleNamespace(min_ctx=4096),
        workload_spec=lambda n_ctx=None: {"repeats": 1},
    )
