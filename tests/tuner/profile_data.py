"""Shared data for the profile tests: a budget, a model reference and a provenance."""

from __future__ import annotations

from collections.abc import Callable

from optuna.trial import FrozenTrial

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
