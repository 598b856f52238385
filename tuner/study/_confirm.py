"""Confirm before export: re-measure the top candidates in fresh processes, export the winner.

A study keeps the best of many noisy measurements, so its best trial is partly lucky (the
"winner's curse"). The top K feasible candidates under the export rule are measured again,
each in `runs` fresh processes, and the winner is chosen on the confirmed numbers. Both the
study's and the confirmed numbers are kept in the study (user attribute `confirmed`).

The app's own "performance" profile is re-measured in the same session, interleaved with the
candidates, and the before/after comparison uses those figures (user attribute
`reference_runs`, by session): a study's early figure of the app's profile may come from a
quieter machine than the confirmation's, which would make the comparison unfair either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from objectives.launch import Launcher, TrialSpec
from objectives.metrics import NO_READING, Sample, TrialMetrics
from tuner.echo import Echo
from tuner.profile import Prefer
from tuner.study._selection import candidates, pareto_front, score
from tuner.study._study_record import StudyRecord, record_confirmations
from tuner.study._trial_record import TrialRecord, objective_values, with_confirmation
from tuner.vram import over_budget_mb, with_vram_reading


def top_candidates(trials: Sequence[FrozenTrial], prefer: Prefer, k: int) -> list[FrozenTrial]:
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
        key = TrialRecord.from_frozen(t).key or str(t.number)
        if key not in seen:
            seen.add(key)
            out.append(t)
    return out[:k]


@dataclass(frozen=True)
class Remeasure:
    """How to measure a trial's settings again: the study's model and the confirmation
    workload (the steady-state turn, plus the app's next turn and the early turn)."""

    runs: int
    timeout_s: float
    model_path: Path
    workload: dict[str, Any]
    launcher: Launcher  # fresh processes, pre-warmed (objectives.launch.trial_launcher)


REFERENCE = "performance"  # the app's profile the exported tier is compared with


def reference_trial(trials: Sequence[FrozenTrial]) -> FrozenTrial | None:
    """The app's own profile the before/after compares with (the study's first measurement of
    Desktop-Mate's "performance" profile), when it completed."""
    for t in trials:
        if TrialRecord.from_frozen(t).baseline == REFERENCE and t.values is not None:
            return t if t.state.name == "COMPLETE" else None
    return None


def confirm(
    study: optuna.Study, *, prefer: Prefer, k: int, how: Remeasure, echo: Echo = print
) -> dict[str, dict[str, Any]]:
    """Re-measure the top `k` candidates; store and return every confirmation so far."""
    return confirm_trials(
        study, top_candidates(study.get_trials(deepcopy=False), prefer, k), how, echo
    )


@dataclass
class _Arm:
    """One settings candidate of a confirmation session and what its runs measured."""

    trial: FrozenTrial
    samples: list[Sample] = field(default_factory=list)
    vram: list[float] = field(default_factory=list)
    unmeasured: bool = False  # a run on a build that offloads gave no VRAM reading
    last: TrialMetrics | None = None


def confirm_trials(
    study: optuna.Study, trials: Sequence[FrozenTrial], how: Remeasure, echo: Echo = print
) -> dict[str, dict[str, Any]]:
    """Re-measure `trials` (those not confirmed yet) in `how.runs` fresh processes each.

    The app's own profile is re-measured in the same session, interleaved with them (run 1 of
    every candidate, then run 2 of every candidate, ...), so that the before/after figures
    share the machine's conditions (a busy machine slows both). The session number links each
    confirmation to the app profile's figures of that session (`reference_runs`)."""
    record = StudyRecord.from_study(study)
    done = dict(record.confirmed)
    todo = [t for t in trials if str(t.number) not in done]
    if not todo:
        return done
    settings = record.settings or {}
    budget = float(settings["vram_budget_mb"])
    latency = str(settings["latency"])
    offload = bool(record.gpu_offload)
    refs = dict(record.reference_runs)
    session = len(refs) + 1
    arms = [_Arm(t) for t in todo]
    ref = reference_trial(study.get_trials(deepcopy=False))
    if ref is not None and TrialRecord.from_frozen(ref).app_n_ctx is not None:
        ref = None  # a profile below the context floor keeps its study figures (trimmed turn)
    if ref is not None and all(t.number != ref.number for t in todo):
        arms.append(_Arm(ref))
    order: list[int] = []  # trial numbers in the order they were measured
    for run in range(how.runs):
        for arm in arms if run % 2 == 0 else arms[::-1]:  # alternate the order
            order.append(arm.trial.number)
            kwargs = TrialRecord.from_frozen(arm.trial).llama_kwargs or {}
            spec = TrialSpec.of(how.model_path, kwargs, how.workload)
            res = how.launcher.run(spec, how.timeout_s)
            ngl = int(spec.params.get("n_gpu_layers", 0))
            res = with_vram_reading(res, offload=offload, n_gpu_layers=ngl)
            if res.status != "ok" or res.metrics is None:
                echo(f"  confirm #{arm.trial.number}: {res.status} ({res.reason})")
                continue
            arm.last = res.metrics
            arm.samples.extend(res.metrics.samples)
            if res.metrics.vram_mb is not None:
                arm.vram.append(res.metrics.vram_mb)
            arm.unmeasured |= res.metrics.vram_source == NO_READING
    for arm in arms:
        entry = _entry(arm, how.runs, budget, latency, session)
        t = arm.trial
        if ref is not None and t.number == ref.number:
            refs[str(session)] = {"trial": t.number, "order": order, **entry}
            if entry["status"] == "ok":
                echo(f"  app's {REFERENCE} profile #{t.number}: {_figures(entry, t)}")
        if any(c.number == t.number for c in todo):
            done[str(t.number)] = entry
            if entry["status"] == "ok":
                echo(f"  confirm #{t.number}: {_figures(entry, t)}")
    record_confirmations(study, done, refs)
    return done


def _figures(entry: dict[str, Any], t: FrozenTrial) -> str:
    v = entry["values"]
    study = list(t.values or [0.0, 0.0])
    return (
        f"{v[0]:.1f} tok/s, {v[1]:.0f} ms (study: {study[0]:.1f} tok/s, {study[1]:.0f} ms; "
        f"{entry['tok_s_gap_pct']:+.1f}% tok/s)"
    )


def _entry(arm: _Arm, runs: int, budget: float, latency: str, session: int) -> dict[str, Any]:
    """The stored confirmation of one arm: medians over all its fresh processes' samples."""
    t, last = arm.trial, arm.last
    if last is None:
        return {"status": "failed", "session": session}
    m = TrialMetrics.from_samples(
        arm.samples,
        load_s=last.load_s,
        peak_rss_mb=last.peak_rss_mb,
        n_prompt_tokens=last.n_prompt_tokens,
        n_generated=last.n_generated,
        history_turns=last.history_turns,
    )
    metrics = m.to_dict()
    metrics["vram_mb"] = max(arm.vram) if arm.vram else None  # the peak bounds the tier
    metrics["vram_mb_runs"] = arm.vram  # one peak per fresh process: median and spread
    metrics["vram_source"] = NO_READING if arm.unmeasured else last.vram_source
    values = objective_values(metrics, latency)
    gap = (values[0] - t.values[0]) / t.values[0] * 100 if t.values and t.values[0] else 0.0
    return {
        "status": "ok",
        "session": session,
        "runs": runs,
        "values": values,
        "study_values": list(t.values or []),
        "tok_s_gap_pct": round(gap, 2),
        "metrics": metrics,
        "over_budget_mb": over_budget_mb(metrics["vram_mb"], budget, metrics["vram_source"]),
    }


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
        out.append(
            with_confirmation(t, list(c["values"]), c["metrics"], float(c["over_budget_mb"]))
        )
    return out
