"""The study's two constraints of a trial (feasible when <= 0), as Optuna stores them: its own
`constraints:` system attributes, and the legacy list that optuna-dashboard 0.21 reads."""

from __future__ import annotations

import copy

import optuna
from optuna.trial import FrozenTrial

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


def with_vram_constraint(t: FrozenTrial, value: float) -> FrozenTrial:
    """A copy of `t` with its VRAM constraint replaced (confirmed figures, a spill); storage is
    not changed (a finished trial can't be)."""
    t2 = copy.deepcopy(t)
    out = dict(t.system_attrs)
    out[_PREFIX + CONSTRAINT_KEY] = value
    legacy = out.get(LEGACY_CONSTRAINTS_ATTR)
    rest = list(legacy[1:]) if isinstance(legacy, list) else []
    out[LEGACY_CONSTRAINTS_ATTR] = [value, *rest]
    t2.system_attrs = out
    return t2
