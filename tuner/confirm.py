"""Confirm before export: re-measure the top candidates in fresh processes, export the winner.

A study keeps the best of many noisy measurements, so its best trial is partly lucky (the
"winner's curse"). The top K feasible candidates under the export rule are measured again,
each in `runs` fresh processes, and the winner is chosen on the confirmed numbers. Both the
study's and the confirmed numbers are kept in the study (user attribute `confirmed`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from objectives.metrics import Sample, TrialMetrics
from objectives.prewarm import WarmPool
from objectives.runner import CHILD_ARGV, run_child
from tuner.selection import candidates, pareto_front, score
from tuner.trial_record import objective_values

Echo = Callable[[str], None]


def top_candidates(trials: Sequence[FrozenTrial], prefer: str, k: int) -> list[FrozenTrial]:
    """The Pareto front ordered by the export rule, then the other feasible trials."""
    cands = candidates(trials)
    front = pareto_front(trials)
    if not front:
        return []
    ranked = sorted(front, key=lambda t: score(t, front, prefer))
    rest = sorted((t for t in cands if t not in ranked), key=lambda t: score(t, front, prefer))
    seen: set[str] = set()
    out = []
    for t in [*ranked, *rest]:
        key = str(t.user_attrs.get("key", t.number))
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out[:k]


@dataclass(frozen=True)
class Remeasure:
    """How to measure a trial's settings again: the study's model and workload."""

    runs: int
    timeout_s: float
    model_path: Path
    workload: dict[str, Any]


def confirm(
    study: optuna.Study, *, prefer: str, k: int, how: Remeasure, echo: Echo = print
) -> dict[str, dict[str, Any]]:
    """Re-measure the top `k` candidates; store and return every confirmation so far."""
    return confirm_trials(
        study, top_candidates(study.get_trials(deepcopy=False), prefer, k), how, echo
    )


def confirm_trials(
    study: optuna.Study, trials: Sequence[FrozenTrial], how: Remeasure, echo: Echo = print
) -> dict[str, dict[str, Any]]:
    """Re-measure `trials` (those not confirmed yet) in `how.runs` fresh processes each."""
    budget = float(study.user_attrs["settings"]["vram_budget_mb"])
    latency = str(study.user_attrs["settings"]["latency"])
    runs, timeout_s, model_path, workload = how.runs, how.timeout_s, how.model_path, how.workload
    done: dict[str, dict[str, Any]] = dict(study.user_attrs.get("confirmed", {}))
    with WarmPool(CHILD_ARGV) as pool:  # fresh processes, pre-warmed
        for t in trials:
            if str(t.number) in done:
                continue
            params = t.user_attrs["llama_kwargs"]
            samples: list[Sample] = []
            vram: list[float] = []
            last: TrialMetrics | None = None
            for _ in range(runs):
                spec = {"model_path": str(model_path), "params": params, "workload": workload}
                res = run_child(spec, timeout_s, pool=pool)
                if res.status != "ok" or res.metrics is None:
                    echo(f"  confirm #{t.number}: {res.status} ({res.reason})")
                    continue
                last = res.metrics
                samples.extend(res.metrics.samples)
                if res.metrics.vram_mb is not None:
                    vram.append(res.metrics.vram_mb)
            if last is None:
                done[str(t.number)] = {"status": "failed"}
                continue
            m = TrialMetrics.from_samples(
                samples,
                load_s=last.load_s,
                peak_rss_mb=last.peak_rss_mb,
                n_prompt_tokens=last.n_prompt_tokens,
                n_generated=last.n_generated,
            )
            metrics = m.to_dict()
            metrics["vram_mb"] = max(vram) if vram else None  # the peak bounds the tier
            metrics["vram_mb_runs"] = vram  # one peak per fresh process: median and spread
            metrics["vram_source"] = last.vram_source
            values = objective_values(metrics, latency)
            gap = (values[0] - t.values[0]) / t.values[0] * 100 if t.values and t.values[0] else 0.0
            done[str(t.number)] = {
                "status": "ok",
                "runs": runs,
                "values": values,
                "study_values": list(t.values or []),
                "tok_s_gap_pct": round(gap, 2),
                "metrics": metrics,
                "over_budget_mb": (metrics["vram_mb"] - budget) if vram else -budget,
            }
            echo(
                f"  confirm #{t.number}: {values[0]:.1f} tok/s, {values[1]:.0f} ms "
                f"(study: {t.values[0]:.1f} tok/s, {t.values[1]:.0f} ms; {gap:+.1f}% tok/s)"
            )
            study.set_user_attr(
                "confirmed", done
            )  # after each: an interrupted confirm keeps its work
    study.set_user_attr("confirmed", done)
    return done


def apply_confirmations(
    trials: Sequence[FrozenTrial], confirmed: dict[str, dict[str, Any]]
) -> list[FrozenTrial]:
    """Trials with the confirmed numbers in place of the study's (copies; storage unchanged)."""
    out = []
    for t in trials:
        c = confirmed.get(str(t.number))
        if not c:
            out.append(t)
            continue
        if c.get("status") != "ok":
            continue  # could not be re-measured: not exported
        t2 = copy.deepcopy(t)
        t2.values = list(c["values"])
        t2.user_attrs = {**t.user_attrs, "metrics": c["metrics"], "confirmed": True}
        t2.system_attrs = {**t.system_attrs, "constraints": [c["over_budget_mb"]]}
        for key in list(t2.system_attrs):
            if key.startswith("constraints:"):
                t2.system_attrs[key] = c["over_budget_mb"]
        out.append(t2)
    return out
