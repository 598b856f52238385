"""VRAM prediction inside a study: predict before loading, learn the machine's overhead.

The part of a process's VRAM that the GGUF can't tell (CUDA context, cuBLAS workspace, staging
buffers) is `overhead_mb`. It starts as measured by the probe (a load with no layer offloaded)
and is refined as the median gap between measured and predicted VRAM of the loaded trials of
the same `overhead_class` (with or without flash attention); a class with no loaded trial yet
uses the median over all of them.

A setting is skipped before loading when the free VRAM it would ask for (tuner.vram: the
predicted peak plus VRAM_MARGIN_MB, the rule of the study's constraint and of the profile's
tiers) is clearly over the budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tuner.vram._gguf_info import GGUFInfo
from tuner.vram._need import free_vram_need_mb
from tuner.vram._predict import VramPrediction, learn_overhead, overhead_class, predict_vram

Pair = tuple[float, float]  # (predicted without overhead, measured) of one loaded trial

# Tolerance for the predictor's error, not a VRAM margin: its target accuracy is 5 %, so a
# setting whose predicted need is up to 5 % over the budget is still loaded and measured (the
# measurement, not the prediction, decides feasibility).
SKIP_MARGIN = 1.05


@dataclass
class VramGuard:
    info: GGUFInfo
    budget_mb: float
    overhead_mb: float  # the probe's, until trials are loaded
    pairs: dict[str, list[Pair]] = field(default_factory=dict)  # by overhead_class

    def overhead_for(self, params: dict[str, Any]) -> float:
        """The learned overhead of this setting's class (all classes' while it has none)."""
        own = self.pairs.get(overhead_class(params))
        if own:
            return learn_overhead(own)
        every = [p for ps in self.pairs.values() for p in ps]
        return learn_overhead(every) if every else self.overhead_mb

    def predict(self, params: dict[str, Any]) -> VramPrediction:
        return predict_vram(self.info, params, self.overhead_for(params))

    def need_mb(self, pred: VramPrediction) -> float:
        """Free VRAM the predicted setting would ask for (the study's and the profile's rule)."""
        return free_vram_need_mb(pred.total_mb)

    def over_budget(self, pred: VramPrediction) -> bool:
        return self.need_mb(pred) > self.budget_mb * SKIP_MARGIN

    def skip_reason(self, pred: VramPrediction) -> str:
        """Why a setting is not loaded: the predicted peak, its need, and the parts."""
        return (
            f"predicted peak {pred.total_mb:.0f} MB VRAM needs {self.need_mb(pred):.0f} MB free, "
            f"more than {(SKIP_MARGIN - 1) * 100:.0f} % over the budget of "
            f"{self.budget_mb:.0f} MB (weights {pred.weights_mb:.0f}, KV {pred.kv_mb:.0f}, "
            f"compute {pred.compute_mb:.0f}, overhead {pred.overhead_mb:.0f}); not loaded"
        )

    def most_layers(self, params: dict[str, Any], layers: int) -> int:
        """The most GPU layers (<= layers) whose predicted need is within the budget; 0 if none."""
        for ngl in range(layers, 0, -1):
            if self.need_mb(self.predict({**params, "n_gpu_layers": ngl})) <= self.budget_mb:
                return ngl
        return 0

    def learn(self, params: dict[str, Any], pred: VramPrediction, measured_mb: float) -> None:
        """Add one loaded trial to its class: the class's overhead becomes the median gap."""
        pair = (pred.total_mb - pred.overhead_mb, measured_mb)
        self.pairs.setdefault(overhead_class(params), []).append(pair)

    def seed(self, loaded: Iterable[tuple[dict[str, Any], Mapping[str, float], float]]) -> None:
        """Learn from the loaded trials of an earlier run of the study (a resume): each one's
        settings, prediction (VramPrediction.to_dict) and measured peak."""
        for params, pred, vram in loaded:
            pair = (float(pred["total_mb"]) - float(pred["overhead_mb"]), float(vram))
            self.pairs.setdefault(overhead_class(params), []).append(pair)
