"""Shared data for the profile tests: a budget, a model reference, a provenance, and the VRAM
constraint and confirmations of constructed trials as the study would record them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial

from tuner.vram import over_budget_mb

BUDGET_MB = 6144.0
MakeTrial = Callable[..., FrozenTrial]
MODEL = {"file": "model.gguf", "size_bytes": 11, "sha256": "ab" * 32}
PROVENANCE = {
    "gpu": "NVIDIA GeForce RTX 4050 Laptop GPU",
    "driver": "560.94",
    "cpu": "13th Gen Intel(R) Core(TM) i7-13620H",
    "llama_cpp_version": "0.3.36",
    "study": "smollm2-rtx-4050",
    "storage": "sqlite:///studies/dm-tune.db",
}


def over_budget(peak_mb: float | None) -> bool:
    """Whether the study (and the confirmation step) records a trial peaking at `peak_mb` as
    over BUDGET_MB: the one VRAM rule of tuner/vram/_need.py, need = peak + margin."""
    return over_budget_mb(peak_mb, BUDGET_MB) > 0


def confirmation(t: FrozenTrial, vram_runs: list[float]) -> dict[str, Any]:
    """What tuner.study stores for `t` re-measured in fresh processes that peaked at
    `vram_runs` (its speed unchanged): vram_mb is their max, the constraint the one rule."""
    peak = max(vram_runs)
    return {
        "status": "ok",
        "values": list(t.values),
        "metrics": {**t.user_attrs["metrics"], "vram_mb": peak, "vram_mb_runs": vram_runs},
        "over_budget_mb": over_budget_mb(peak, BUDGET_MB),
    }


def write_cpu_profile(model: Path, make_trial: MakeTrial, path: Path) -> Path:
    """A one-tier (CPU) profile for `model`, built and written as `dm-tune export` does."""
    from tuner.model_file import sha256_file
    from tuner.profile import quick_digest
    from tuner.profile.build import build_profile, write_profile

    ref = {
        "file": model.name,
        "size_bytes": model.stat().st_size,
        "sha256": sha256_file(model),
        "quick_digest": quick_digest(model),
    }
    profile = build_profile(
        [make_trial(20, 900, None, 0, n_ctx=512)],
        model=ref,
        provenance={**PROVENANCE, "gpu": None},
        budget_mb=6144,
        prefer="balanced",
        gpu_present=False,
    )
    write_profile(path, profile)
    return path
