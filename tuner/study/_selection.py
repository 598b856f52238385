"""Which trial is "best": the rule dm-tune uses to export, shown to the user.

1. Only COMPLETE trials that satisfy every constraint (VRAM within budget) are candidates; a
   suspected spill into system memory is over the budget (tuner/study/_spill.py, checked again
   here over all the trials given: a later trial can reveal an earlier spill).
2. Of those, the Pareto front on (generation tok/s: higher is better, first-token latency:
   lower is better) is kept: no other candidate is at least as good on both and better on one.
3. `prefer` picks one point of the front:
   - throughput: the highest tok/s;
   - latency: the lowest first-token latency;
   - balanced (default): the point closest to the ideal (best tok/s, best latency), each
     objective measured as its relative shortfall from the best on the front (10 % fewer tok/s
     weighs as much as 10 % more latency), so neither unit dominates and a 1 ms difference
     between two otherwise equal trials stays a small difference.
4. Ties (equal after rounding to 0.1 %) go to the larger n_ctx (more chat history for the app),
   then the smaller VRAM.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from tuner.profile import Prefer
from tuner.study._spill import mark_spills
from tuner.study._trial_record import TrialRecord

PREFER_CHOICES: tuple[str, ...] = tuple(p.value for p in Prefer)
TIE = 1e-3  # scores within 0.1 % are a tie (relative; balanced scores are relative already)


def is_feasible(t: FrozenTrial) -> bool:
    ok: bool = all(float(v) <= 0.0 for v in t.constraints.values())
    return ok


def candidates(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [
        t
        for t in mark_spills(trials)
        if t.state == TrialState.COMPLETE
        and t.values is not None
        and is_feasible(t)
        and TrialRecord.from_frozen(t).status != "reused"  # a copy of an earlier trial's result
    ]


def dominates(a: FrozenTrial, b: FrozenTrial) -> bool:
    """`a` is at least as good as `b` on both objectives and better on one."""
    ta, la = float(a.values[0]), float(a.values[1])
    tb, lb = float(b.values[0]), float(b.values[1])
    return ta >= tb and la <= lb and (ta > tb or la < lb)


def pareto_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Feasible, non-dominated trials, sorted by tok/s descending."""
    cands = candidates(trials)
    front = [t for t in cands if not any(dominates(o, t) for o in cands if o is not t)]
    return sorted(front, key=lambda t: -t.values[0])


def _vram(t: FrozenTrial) -> float:
    v = TrialRecord.from_frozen(t).vram_mb
    return v if v is not None else 0.0


def _n_ctx(t: FrozenTrial) -> int:
    return int(TrialRecord.from_frozen(t).settings.get("n_ctx", 0))


def score(t: FrozenTrial, front: list[FrozenTrial], prefer: Prefer) -> float:
    """Lower is better."""
    tps, lat = float(t.values[0]), float(t.values[1])
    if prefer == Prefer.THROUGHPUT:
        return -tps
    if prefer == Prefer.LATENCY:
        return lat
    if prefer != Prefer.BALANCED:
        raise ValueError(f"prefer must be one of {', '.join(PREFER_CHOICES)}")
    t_best = max(float(f.values[0]) for f in front)
    l_best = min(float(f.values[1]) for f in front)
    dt = (t_best - tps) / t_best if t_best > 0 else 0.0
    dl = (lat - l_best) / l_best if l_best > 0 else 0.0
    return math.hypot(dt, dl)


def choose_best(
    trials: Sequence[FrozenTrial], prefer: Prefer = Prefer.BALANCED
) -> FrozenTrial | None:
    """The trial to export under `prefer`, or None when no trial is feasible."""
    front = pareto_front(trials)
    if not front:
        return None
    scores = {t.number: score(t, front, prefer) for t in front}
    best = min(scores.values())
    tol = TIE * max(abs(best), 1e-9) if prefer != Prefer.BALANCED else TIE
    tied = [t for t in front if scores[t.number] <= best + tol]
    return min(tied, key=lambda t: (-_n_ctx(t), _vram(t), t.number))
