"""Write one trial's outcome into Optuna: values, constraint, and the user attributes we keep."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import optuna

from objectives.runner import ChildResult

CONSTRAINT_KEY = "vram_over_budget_mb"
# Legacy list attribute: optuna-dashboard 0.21 only reads this one (Optuna 5 reads both).
LEGACY_CONSTRAINTS_ATTR = "constraints"


def set_vram_constraint(trial: optuna.Trial, vram_mb: float | None, budget_mb: float) -> float:
    """Feasible when <= 0. Without a readable GPU nothing lands in VRAM: -budget."""
    value = (vram_mb - budget_mb) if vram_mb is not None else -budget_mb
    trial.set_constraint(CONSTRAINT_KEY, value)
    trial.storage.set_trial_system_attr(trial._trial_id, LEGACY_CONSTRAINTS_ATTR, [value])
    return value


def copy_constraint(trial: optuna.Trial, value: float) -> None:
    trial.set_constraint(CONSTRAINT_KEY, value)
    trial.storage.set_trial_system_attr(trial._trial_id, LEGACY_CONSTRAINTS_ATTR, [value])


def record_child(trial: optuna.Trial, res: ChildResult) -> None:
    trial.set_user_attr("status", res.status)
    trial.set_user_attr("reason", res.reason)
    trial.set_user_attr("wall_s", round(res.wall_s, 3))
    if res.metrics is not None:
        trial.set_user_attr("metrics", res.metrics.to_dict())
    gpu = {k: v for k, v in asdict(res.gpu).items() if v is not None}
    if gpu:
        trial.set_user_attr("gpu", gpu)
    if res.status not in ("ok", "pruned"):
        trial.set_user_attr("returncode", res.returncode)
        trial.set_user_attr("phase", res.phase)
        trial.set_user_attr("stderr_tail", res.stderr_tail[-2000:])


def objective_values(metrics: dict[str, Any], latency: str) -> list[float]:
    lat = metrics.get("warm_ttft_ms") if latency == "warm" else metrics["ttft_ms"]
    return [float(metrics["gen_tok_s"]), float(lat if lat is not None else metrics["ttft_ms"])]
