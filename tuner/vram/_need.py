"""The one VRAM rule from study to selector: the free VRAM a setting asks for.

A trial is feasible exactly when the tier built from it can be selected with the budget free:
the study's constraint, the skip-before-load guard, the profile's tiers and the app's
`select_profile` all compare this need (not the raw peak) with the VRAM on offer.

`VRAM_MARGIN_MB` is added to the measured per-process peak. It covers what one process's peak
does not show: allocations that a fresh process places differently (the spread between
confirming processes, checked at export), the driver's rounding of allocations, and a little
room so the app does not push the desktop's own buffers out of VRAM. On the H200 the peaks of
fresh processes at the same settings were identical (docs/benchmarks/gpu.md), so the margin is
not spent on run-to-run noise there.
"""

from __future__ import annotations

import math

from objectives.metrics import NO_READING

VRAM_MARGIN_MB = 256.0


def free_vram_need_mb(peak_mb: float) -> float:
    """Free VRAM (MB) a setting whose measured peak is `peak_mb` asks for."""
    return float(math.ceil(peak_mb + VRAM_MARGIN_MB))


def over_budget_mb(peak_mb: float | None, budget_mb: float, source: str | None = None) -> float:
    """The study's VRAM constraint (feasible when <= 0), for a peak read from `source`
    (objectives.metrics.VramSource). Without a reading on a CPU-only build (source None)
    nothing is placed in VRAM: -budget. A build that offloads but gave no reading at all
    (source "none") is never within the budget: its need is taken as twice the budget
    (finite: the dashboard can't read an infinite constraint)."""
    if source == NO_READING:
        return float(budget_mb)
    if peak_mb is None:
        return -budget_mb
    return free_vram_need_mb(peak_mb) - budget_mb
