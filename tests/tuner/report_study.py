"""A small dm-tune study in a real SQLite file, with attributes shaped like `dm-tune run`'s
(tuner/study/: _study.py, _trial_record.py, _confirm.py); the figures are invented."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tuner.study import CONSTRAINT_KEY, CTX_CONSTRAINT_KEY

DATA = Path(__file__).resolve().parents[2] / "docs" / "benchmarks" / "data"
RECORDED = (
    "cpu-demo.db",
    "cpu-demo-2.db",
    "cpu-demo-3.db",
    "gpu/gpu-h200.db",
    "gpu/run2-no-starts/gpu-h200.db",
    "gpu/run3/gpu-h200.db",
    "gpu/run4-issue9/issue9.db",
    "gpu/run5-pressure/13b-free.db",
    "gpu/run5-pressure/7b-free.db",
    "gpu/run5-pressure/7b-over.db",
)
BUDGET = 6144.0
FLOOR = 4096
LAYERS = 33
DISTS = {
    "n_gpu_layers": IntDistribution(0, LAYERS),
    "n_ctx": CategoricalDistribution([2048, 4096, 8192]),
    "n_threads": IntDistribution(1, 8),
    "flash_attn": CategoricalDistribution([False, True]),
}


def recorded_copy(name: str, tmp_path: Path) -> str:
    """A recorded benchmark database copied into tmp_path (docs/ is never written)."""
    dst = tmp_path / Path(name).name
    shutil.copyfile(DATA / name, dst)
    return f"sqlite:///{dst}"


def _metrics(tok_s: float, ttft: float, vram: float | None) -> dict[str, Any]:
    return {
        "gen_tok_s": tok_s,
        "ttft_ms": ttft,
        "warm_ttft_ms": ttft * 0.8,
        "vram_mb": vram,
        "vram_source": "process" if vram is not None else None,
        "samples": [],
    }


def add(
    study: optuna.Study,
    *,
    ngl: int,
    n_ctx: int = FLOOR,
    threads: int = 4,
    fa: bool = False,
    tok_s: float | None = None,
    ttft: float | None = None,
    vram: float | None = None,
    state: TrialState = TrialState.COMPLETE,
    **attrs: Any,
) -> None:
    params = {"n_gpu_layers": ngl, "n_ctx": n_ctx, "n_threads": threads, "flash_attn": fa}
    kwargs = {**params, "n_batch": 512, "use_mlock": False}
    user: dict[str, Any] = {"llama_kwargs": kwargs, "status": "ok", "reason": "", **attrs}
    system: dict[str, Any] = {}
    values = None
    if state == TrialState.COMPLETE:
        assert tok_s is not None and ttft is not None
        values = [tok_s, ttft]
        user["metrics"] = _metrics(tok_s, ttft, vram)
        over = (vram + 256 - BUDGET) if vram is not None else -BUDGET
        system = {
            f"constraints:{CONSTRAINT_KEY}": over,
            f"constraints:{CTX_CONSTRAINT_KEY}": float(FLOOR - n_ctx),
        }
    study.add_trial(
        create_trial(
            state=state,
            params=params,
            distributions=DISTS,
            values=values,
            user_attrs=user,
            system_attrs=system,
        )
    )


def make_study(tmp_path: Path, *, gpu: bool = True, sampled: int = 12) -> tuple[optuna.Study, str]:
    """Baselines, a start point, sampled trials (feasible ones, one over budget, one below the
    floor), a pruned one with partial figures, a predicted-over-budget skip, an OOM, and a
    confirmation of the best with the app's profile side by side."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(
        study_name="synthetic", storage=url, directions=["maximize", "minimize"]
    )
    study.set_user_attr("settings", {"vram_budget_mb": BUDGET, "latency": "cold", "min_ctx": FLOOR})
    study.set_user_attr("objectives", ["gen_tok_s", "cold_ttft_ms"])
    study.set_user_attr(
        "model",
        {
            "path": str(tmp_path / "gone.gguf"),
            "file": "m.gguf",
            "size_bytes": 4_000_000_000,
            "sha256": "0" * 64,
            "offloadable_layers": LAYERS,
        },
    )
    gpus = [
        {"index": 0, "name": "Test GPU", "total_mb": 8192.0, "driver": "1", "bandwidth_gb_s": 400.0}
    ]
    study.set_user_attr(
        "hardware", {"cpu": "Test CPU", "logical_cores": 8, "gpus": gpus if gpu else []}
    )
    study.set_user_attr("gpu_offload", gpu)
    study.set_user_attr("llama_cpp_version", "0.3.36")
    study.set_user_attr(
        "context_floor",
        {
            "turns_kept": 10,
            "max_tokens": 512,
            "steady_state_tokens": 2402,
            "worst_case_tokens": 6650,
            "min_ctx": FLOOR,
            "min_ctx_rule": "steady",
        },
    )
    vram = (lambda ngl: 500.0 + 150.0 * ngl) if gpu else (lambda ngl: None)
    # 0-2: the app's profiles (balanced below the floor), 3: a start point
    add(
        study,
        ngl=LAYERS,
        tok_s=50.0,
        ttft=300.0,
        vram=vram(LAYERS),
        baseline="performance",
        vram_predicted_mb=5400.0,
    )
    add(
        study,
        ngl=20,
        n_ctx=2048,
        tok_s=40.0,
        ttft=400.0,
        vram=vram(20),
        baseline="balanced",
        below_floor="n_ctx 2048 is below the context floor 4096",
        vram_predicted_mb=3500.0,
    )
    add(
        study,
        ngl=0,
        tok_s=5.0,
        ttft=5000.0,
        vram=vram(0),
        baseline="cpu_fallback",
        vram_predicted_mb=500.0,
    )
    add(
        study,
        ngl=LAYERS,
        fa=True,
        tok_s=60.0,
        ttft=250.0,
        vram=vram(LAYERS),
        start="performance_flash_attn",
        vram_predicted_mb=5400.0,
    )
    for i in range(sampled):  # 4..: feasible sampled trials, varied
        ngl = 10 + i
        add(
            study,
            ngl=ngl,
            threads=1 + i % 8,
            fa=i % 2 == 0,
            tok_s=10.0 + 2 * i + (i % 3),
            ttft=2000.0 - 50 * i,
            vram=vram(ngl),
            vram_predicted_mb=(vram(ngl) or 0) + 30,
        )
    add(study, ngl=LAYERS, n_ctx=8192, tok_s=55.0, ttft=260.0, vram=7000.0 if gpu else None)
    add(
        study,
        ngl=5,
        state=TrialState.PRUNED,
        status="pruned",
        reason="dominated",
        watch={
            "phase": "repeat 1",
            "elapsed_s": 2.0,
            "tokens": 9,
            "ttft_s": 1.5,
            "gen_s": 1.0,
            "vram_mb": 900.0,
        },
    )
    add(
        study,
        ngl=LAYERS,
        n_ctx=8192,
        fa=True,
        state=TrialState.PRUNED,
        status="over_budget_predicted",
        reason="predicted over the budget; not loaded",
        vram_predicted_mb=9000.0,
    )
    add(
        study,
        ngl=30,
        state=TrialState.FAIL,
        status="oom",
        reason="out of memory",
        phase="load",
        returncode=1,
        stderr_tail="CUDA error: out of memory",
    )
    best = 3
    entry = {
        "status": "ok",
        "session": 1,
        "runs": 2,
        "values": [58.0, 255.0],
        "study_values": [60.0, 250.0],
        "tok_s_gap_pct": -3.33,
        "metrics": _metrics(58.0, 255.0, vram(LAYERS)),
        "over_budget_mb": (vram(LAYERS) or 0) + 256 - BUDGET if gpu else -BUDGET,
    }
    study.set_user_attr("confirmed", {str(best): entry})
    study.set_user_attr(
        "reference_runs",
        {
            "1": {
                **entry,
                "trial": 0,
                "values": [49.0, 305.0],
                "metrics": _metrics(49.0, 305.0, vram(LAYERS)),
            }
        },
    )
    return study, url
