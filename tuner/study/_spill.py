"""A setting that spilled into system memory is over the VRAM budget, whatever its peak says.

On Windows the NVIDIA driver (536.40 and later, "CUDA - Sysmem Fallback Policy") may place in
shared system memory what does not fit on the card instead of failing the allocation: the
setting loads and runs, only slowly, and its per-process peak stays within the card. The
study would measure it as a slow but feasible trial. What gives it away is the card full while
the trial is much slower than a setting with fewer layers on the GPU, which should be slower,
not faster.

The rule (`spill_reason`), only where the driver can spill (the trial's GPU reading says so:
Windows; on Linux a setting that does not fit fails, and a "6 GB card" made by holding the
rest of a large GPU is always nearly full, so the rule would only see noise there): a
measured trial is a suspected spill when the device memory of its
fullest GPU reached at least `SPILL_FILL_PCT` % of that GPU's total during the trial, and its
tok/s is below `SPILL_SPEED_RATIO` of the best tok/s among the measured trials that are
comparable with it and run strictly fewer layers on the GPU. Comparable: the same `n_ctx`,
`type_k`, `type_v`, `flash_attn` and `offload_kqv` (the settings that change what a layer
takes on the card and how fast attention runs). The other knobs (threads, batch sizes, mlock)
may differ: requiring them equal too would leave almost nothing to compare in a sampled study,
and the factor of two is the allowance for them.

Applied when a trial completes, against the trials measured before it (_study.py), and again
over all trials whenever a trial is chosen (_selection.py: a later trial with fewer layers can
reveal an earlier spill). Either way the study's VRAM constraint of the trial is violated
(`spilled_over_budget_mb`) and its `spill` user attribute holds the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from optuna.trial import FrozenTrial, TrialState

from tuner.study._constraints import CONSTRAINT_KEY
from tuner.study._trial_record import TrialRecord, with_spill
from tuner.vram import free_vram_need_mb

SPILL_FILL_PCT = 97.0  # device memory at least this % of the card's total
SPILL_SPEED_RATIO = 0.5  # tok/s below this fraction of a comparable setting's
# Settings that must be equal for two trials to be compared, and llama.cpp's default for each.
_LIKE = (
    ("n_ctx", None),
    ("type_k", "f16"),
    ("type_v", "f16"),
    ("flash_attn", False),
    ("offload_kqv", True),
)


class SpillPoint(NamedTuple):
    """What the rule reads of one measured trial: plain values."""

    trial: int
    n_gpu_layers: int
    like: tuple[Any, ...]  # the comparable settings (`like_key`)
    tok_s: float
    device_used_mb: float | None = None  # peak during the trial, of the fullest GPU
    device_total_mb: float | None = None  # that GPU's total
    fallback: bool = False  # the driver may spill (objectives.nvml.sysmem_fallback_possible)


def like_key(settings: Mapping[str, Any]) -> tuple[Any, ...]:
    """The settings two trials must share to be compared (absent = llama.cpp's default)."""
    return tuple(settings.get(k, default) for k, default in _LIKE)


def spill_reason(p: SpillPoint, others: Iterable[SpillPoint]) -> str | None:
    """The rule (module docstring): the reason when `p` is a suspected spill, else None.

    `others` are the measured trials to compare with (any order; `p` itself, trials not
    comparable with it and trials with as many GPU layers or more are ignored)."""
    if p.device_used_mb is None or p.device_total_mb is None:
        return None  # no device reading (no NVIDIA GPU, or a study recorded before it)
    if not p.fallback:
        return None  # a driver that fails instead of spilling (Linux; readings before it)
    if not p.device_total_mb > 0 or p.device_used_mb < 0 or p.tok_s < 0:
        raise ValueError(
            f"trial {p.trial}: device memory {p.device_used_mb} of {p.device_total_mb} MB at "
            f"{p.tok_s} tok/s is not a measurement"
        )
    if p.device_used_mb * 100 < SPILL_FILL_PCT * p.device_total_mb:
        return None
    fewer = [
        o
        for o in others
        if o.trial != p.trial and o.like == p.like and o.n_gpu_layers < p.n_gpu_layers
    ]
    if not fewer:
        return None
    best = max(fewer, key=lambda o: (o.tok_s, -o.trial))
    if not p.tok_s < SPILL_SPEED_RATIO * best.tok_s:
        return None
    return (
        f"suspected spill into system memory (sysmem fallback): device memory "
        f"{p.device_used_mb:.0f} of {p.device_total_mb:.0f} MB, tok/s {p.tok_s:.1f} < half of "
        f"trial {best.trial} ({best.tok_s:.1f} tok/s) with fewer GPU layers "
        f"({best.n_gpu_layers} vs {p.n_gpu_layers})"
    )


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def spill_point(
    number: int, settings: Mapping[str, Any], tok_s: float, gpu: Mapping[str, Any]
) -> SpillPoint:
    """The rule's view of a trial: its normalized settings (`llama_kwargs`), generation tok/s
    and GPU reading (the `gpu` user attribute, objectives.nvml.GpuReading)."""
    return SpillPoint(
        trial=number,
        n_gpu_layers=int(settings.get("n_gpu_layers", 0)),
        like=like_key(settings),
        tok_s=float(tok_s),
        device_used_mb=_opt(gpu.get("device_used_mb")),
        device_total_mb=_opt(gpu.get("device_total_mb")),
        fallback=bool(gpu.get("sysmem_fallback", False)),
    )


def measured_points(trials: Iterable[FrozenTrial]) -> list[SpillPoint]:
    """The completed trials with a measured tok/s, as the rule sees them."""
    out = []
    for t in trials:
        if t.state != TrialState.COMPLETE or not t.values:
            continue
        r = TrialRecord.from_frozen(t)
        out.append(spill_point(t.number, r.settings, float(t.values[0]), r.gpu or {}))
    return out


def spilled_over_budget_mb(over_mb: float, peak_mb: float | None, device_total_mb: float) -> float:
    """The VRAM constraint of a spilled trial whose constraint was `over_mb` (need - budget)
    with a measured peak of `peak_mb`: the need taken as the whole card plus the margin (the
    setting did not fit on it), so always above `over_mb`, and at least 1 MB over."""
    more = free_vram_need_mb(device_total_mb) - free_vram_need_mb(peak_mb or 0.0)
    return max(over_mb + max(more, 0.0), 1.0)


def mark_spills(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """`trials` with every suspected spill (compared with all the others) replaced by a copy
    whose VRAM constraint is violated and whose `spill` user attribute says why; the others are
    returned as they are (storage is not changed: a finished trial can't be)."""
    points = measured_points(trials)
    by_number = {p.trial: p for p in points}
    out = []
    for t in trials:
        p = by_number.get(t.number)
        r = TrialRecord.from_frozen(t)
        if p is None or p.device_total_mb is None or r.spill is not None:
            out.append(t)  # not measured, no device reading, or marked when it completed
            continue
        reason = spill_reason(p, points)
        if reason is None:
            out.append(t)
            continue
        over = float(t.constraints.get(CONSTRAINT_KEY, 0.0))
        out.append(
            with_spill(t, reason, spilled_over_budget_mb(over, r.vram_mb, p.device_total_mb))
        )
    return out


def spilled(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The suspected spills of `trials` (marked copies), in order: for the summary."""
    return [t for t in mark_spills(trials) if TrialRecord.from_frozen(t).spill is not None]
