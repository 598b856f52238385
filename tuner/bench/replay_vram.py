"""Replay the study's VRAM guard over recorded GPU studies with today's predictor.

Each loaded trial is predicted with what the guard had learned from the trials loaded before
it (as a study would), and compared with NVML's per-process peak; the compute buffer is compared
with llama.cpp's CUDA0 figure. No GPU needed: the GGUF headers are rebuilt from make_gguf's
tensor list. Used for docs/benchmarks/fit.md ("VRAM prediction").

    python scripts/replay_vram.py            # the H200 studies under docs/benchmarks/data/gpu
"""

from __future__ import annotations

import argparse
import statistics

import optuna

from tuner.bench.make_gguf import SHAPES, Shape, header_info
from tuner.paths import ROOT
from tuner.study import TrialRecord
from tuner.vram import VramGuard

D = "docs/benchmarks/data/gpu/"
M7 = SHAPES["mistral-7b"]
M13 = SHAPES["llama2-13b"]
STUDIES = [  # (database, study name or None for the only one, shape)
    (D + "gpu-h200.db", None, M7),
    (D + "run2-no-starts/gpu-h200.db", None, M7),
    (D + "run3/gpu-h200.db", None, M7),
    (D + "run4-issue9/issue9.db", None, M13),
    (D + "run5-pressure/7b-free.db", "7b-free", M7),
    (D + "run5-pressure/7b-over.db", "7b-over", M7),
    (D + "run5-pressure/13b-free.db", "13b-free", M13),
    (D + "run5-pressure/13b-over.db", "13b-over", M13),
]


def replay(db: str, name: str | None, shape: Shape) -> tuple[list[float], list[float], list[float]]:
    """(recorded errors %, replayed errors %, replayed compute errors MiB) of the loaded trials."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{ROOT / db}")
    loaded = [
        r
        for r in map(TrialRecord.from_frozen, study.get_trials(deepcopy=False))
        if r.status == "ok" and r.vram_mb and r.vram_predicted
    ]
    if not loaded:
        return [], [], []
    guard = VramGuard(
        info=header_info(shape, "Q4_0"),
        budget_mb=1e9,
        overhead_mb=(loaded[0].vram_predicted or {})["overhead_mb"],
    )
    recorded, replayed, compute = [], [], []
    for r in loaded:
        params = r.llama_kwargs or {}
        measured = float(r.vram_mb or 0.0)
        pred = guard.predict(params)
        replayed.append((pred.total_mb - measured) / measured * 100)
        if r.vram_prediction_error_pct is not None:
            recorded.append(r.vram_prediction_error_pct)
        cuda0 = (r.llama_buffers or {}).get("CUDA0", {}).get("compute")
        if cuda0:
            compute.append(pred.compute_mb - cuda0)
        guard.learn(params, pred, measured)
    return recorded, replayed, compute


def _share(errors: list[float]) -> str:
    return f"{sum(abs(e) <= 5 for e in errors)}/{len(errors)}" if errors else "-"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print("| study | loaded | within 5 % then | within 5 % now | worst now | compute MiB now |")
    print("|---|---|---|---|---|---|")
    for db, name, shape in STUDIES:
        recorded, replayed, compute = replay(db, name, shape)
        if not replayed:
            continue
        worst = max(replayed, key=abs)
        spread = f"{min(compute):+.0f}..{max(compute):+.0f}" if compute else "-"
        print(
            f"| {db.removeprefix(D)} | {len(replayed)} | {_share(recorded)} | {_share(replayed)} "
            f"| {worst:+.1f} % | {spread} (median {statistics.median(compute):+.0f}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
