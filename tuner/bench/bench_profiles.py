"""Benchmark a finished study: Desktop-Mate's baseline profiles vs the exported best, re-measured.

Each setting runs in `--runs` fresh processes (each a warm-up + the workload's repeats); the
table reports the median over runs of each run's median, with the spread (min-max and CV).
Also summarizes the study itself: wall time, per-trial overhead (process start + import +
load), and the VRAM prediction error distribution. Used for docs/benchmarks/*.md.

    python scripts/bench_profiles.py --storage sqlite:///studies/dm-tune.db --runs 5 \
        --profile configs/profiles/NAME.yaml --out bench.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from objectives.launch import ColdLauncher, Launcher, TrialSpec
from tuner.profile import load_profile
from tuner.study import StudyRecord, TrialRecord, load_existing_study


def _stats(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"median": None, "min": None, "max": None, "cv": None, "n": 0}
    mean = statistics.fmean(xs)
    return {
        "median": statistics.median(xs),
        "min": min(xs),
        "max": max(xs),
        "cv": statistics.stdev(xs) / mean if len(xs) > 1 and mean else 0.0,
        "n": len(xs),
    }


def measure(
    model: str, params: dict[str, Any], workload: dict[str, Any], runs: int, launcher: Launcher
) -> dict[str, Any]:
    tok, ttft, warm, vram, errors = [], [], [], [], []
    spec = TrialSpec.of(model, params, workload)
    for _ in range(runs):
        res = launcher.run(spec, 600)
        if res.status != "ok" or res.metrics is None:
            errors.append(f"{res.status}: {res.reason}")
            continue
        tok.append(res.metrics.gen_tok_s)
        ttft.append(res.metrics.ttft_ms)
        if res.metrics.warm_ttft_ms is not None:
            warm.append(res.metrics.warm_ttft_ms)
        if res.metrics.vram_mb is not None:
            vram.append(res.metrics.vram_mb)
    return {
        "params": params,
        "gen_tok_s": _stats(tok),
        "ttft_ms": _stats(ttft),
        "warm_ttft_ms": _stats(warm),
        "vram_mb": _stats(vram),
        "errors": errors,
    }


def study_summary(study: Any) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.datetime_start and t.datetime_complete]
    wall = (
        (
            max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
        ).total_seconds()
        if finished
        else None
    )
    overhead, errors = [], []
    statuses: dict[str, int] = {}
    for t in trials:
        r = TrialRecord.from_frozen(t)
        statuses[r.outcome] = statuses.get(r.outcome, 0) + 1
        m = r.metrics
        if r.status == "ok":
            start = (m.get("extra") or {}).get("startup_s")
            if start is not None:
                overhead.append(start + m["load_s"])
            if r.vram_prediction_error_pct is not None:
                errors.append(r.vram_prediction_error_pct)
    within5 = sum(1 for e in errors if abs(e) <= 5) / len(errors) if errors else None
    return {
        "trials": len(trials),
        "statuses": statuses,
        "wall_s_first_start_to_last_end": wall,
        "per_trial_overhead_s": _stats(overhead),
        "vram_prediction_error_pct": _stats([abs(e) for e in errors]),
        "vram_prediction_signed_errors_pct": errors,
        "share_within_5pct": within5,
        "confirmed": StudyRecord.from_study(study).confirmed,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study")
    ap.add_argument("--profile", type=Path, help="exported profile: its default tier is 'tuned'")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    study = load_existing_study(a.storage, a.study)
    record = StudyRecord.from_study(study)
    model = (record.model or {})["path"]
    workload = record.workload_spec or {}
    launcher = ColdLauncher()  # each run a fresh trial child
    rows: dict[str, Any] = {}
    for t in study.get_trials(deepcopy=False):
        r = TrialRecord.from_frozen(t)
        name = r.baseline
        if name and name not in rows:
            rows[name] = measure(model, r.llama_kwargs or {}, workload, a.runs, launcher)
            print(name, json.dumps(rows[name]["gen_tok_s"]), flush=True)
    if a.profile:
        prof = load_profile(a.profile)
        for tier in prof.tiers:
            assert tier.measured is not None or tier.name == "cpu_fallback"
            if tier.measured is None:
                continue
            trial = study.trials[tier.measured.trial]
            params = TrialRecord.from_frozen(trial).llama_kwargs or {}
            rows[f"tuned:{tier.name}"] = measure(model, params, workload, a.runs, launcher)
            print(tier.name, json.dumps(rows[f"tuned:{tier.name}"]["gen_tok_s"]), flush=True)
    out = {"rows": rows, "study": study_summary(study), "runs": a.runs}
    a.out.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
