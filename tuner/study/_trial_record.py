"""Write one trial's outcome into Optuna: values, constraint, and the user attributes we keep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from objectives.launch import ChildResult, Watch
from tuner.vram import over_budget_mb

# The study's two constraints, feasible when <= 0, in this order in the legacy list:
CONSTRAINT_KEY = "vram_over_budget_mb"  # the tier's free-VRAM need minus the budget
CTX_CONSTRAINT_KEY = "n_ctx_below_floor"  # the context floor minus n_ctx
CONSTRAINT_KEYS = (CONSTRAINT_KEY, CTX_CONSTRAINT_KEY)
# Legacy list attribute: optuna-dashboard 0.21 only reads this one (Optuna 5 reads both).
LEGACY_CONSTRAINTS_ATTR = "constraints"
_PREFIX = "constraints:"


def constraint_values(
    vram_mb: float | None,
    budget_mb: float,
    n_ctx: int,
    min_ctx: int,
    vram_source: str | None = None,
) -> dict[str, float]:
    """Both constraints of one measurement (tuner/vram/_need.py, tuner/space/_context_floor.py)."""
    return {
        CONSTRAINT_KEY: over_budget_mb(vram_mb, budget_mb, vram_source),
        CTX_CONSTRAINT_KEY: float(min_ctx - n_ctx),
    }


def set_constraints(trial: optuna.Trial, values: dict[str, float]) -> None:
    for key in CONSTRAINT_KEYS:
        trial.set_constraint(key, values[key])
    trial.storage.set_trial_system_attr(
        trial._trial_id, LEGACY_CONSTRAINTS_ATTR, [values[k] for k in CONSTRAINT_KEYS]
    )


def copy_constraints(trial: optuna.Trial, prev: FrozenTrial) -> None:
    """A reused trial takes its twin's constraints (a study made before the floor: VRAM only)."""
    values = dict(prev.constraints)
    values.setdefault(CTX_CONSTRAINT_KEY, 0.0)
    set_constraints(trial, values)


def with_vram_constraint(system_attrs: Mapping[str, Any], value: float) -> dict[str, Any]:
    """A trial's system attributes with the VRAM constraint replaced (confirmed figures)."""
    out = dict(system_attrs)
    out[_PREFIX + CONSTRAINT_KEY] = value
    legacy = out.get(LEGACY_CONSTRAINTS_ATTR)
    rest = list(legacy[1:]) if isinstance(legacy, list) else []
    out[LEGACY_CONSTRAINTS_ATTR] = [value, *rest]
    return out


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


# Typed readers of what record_child and the study store (for the report and the trial list).
ROLE_ATTRS = ("baseline", "start")  # enqueued trials carry their name under one of these


def settings_of(t: FrozenTrial) -> dict[str, Any]:
    """The settings passed to Llama(...): the normalized `llama_kwargs`, else the params."""
    kwargs = t.user_attrs.get("llama_kwargs")
    return dict(kwargs) if isinstance(kwargs, dict) else dict(t.params)


def metrics_of(t: FrozenTrial) -> dict[str, Any]:
    """The trial's measured metrics (TrialMetrics.to_dict()); empty when nothing was measured."""
    m = t.user_attrs.get("metrics")
    return dict(m) if isinstance(m, dict) else {}


def status_of(t: FrozenTrial) -> str:
    """dm-tune's status (`ok`, `pruned`, `over_budget_predicted`...), else Optuna's state."""
    return str(t.user_attrs.get("status") or t.state.name.lower())


def role_of(t: FrozenTrial) -> tuple[str, str]:
    """(`baseline` | `start` | `sampled`, the profile or start point's name or "")."""
    for kind in ROLE_ATTRS:
        if kind in t.user_attrs:
            return kind, str(t.user_attrs[kind])
    return "sampled", ""


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def vram_predicted_mb(t: FrozenTrial) -> float | None:
    """The predictor's estimate before loading; None where no GPU was predicted for."""
    return _float(t.user_attrs.get("vram_predicted_mb"))


def partial_figures(t: FrozenTrial) -> tuple[float, float] | None:
    """(tok/s, first-token ms) a pruned trial's first answer showed when it was stopped, or
    None when it was stopped before its first token or recorded no watch."""
    w = t.user_attrs.get("watch")
    if not isinstance(w, dict):
        return None
    tokens, ttft_s, gen_s = _float(w.get("tokens")), _float(w.get("ttft_s")), _float(w.get("gen_s"))
    if tokens is None or ttft_s is None or gen_s is None:
        return None
    watch = Watch(None, 0.0, int(tokens), ttft_s, gen_s, None)
    return None if watch.gen_tok_s is None else (watch.gen_tok_s, ttft_s * 1000)
