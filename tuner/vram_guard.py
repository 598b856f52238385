"""VRAM prediction inside a study: predict before loading, learn the machine's overhead.

The part of a process's VRAM that the GGUF can't tell (CUDA context, cuBLAS workspace, staging
buffers) is `overhead_mb`. It starts as measured by the probe (a load with no layer offloaded)
and is refined as the median gap between measured and predicted VRAM of the loaded trials.

A setting is skipped before loading when the free VRAM it would ask for (tuner.vram_need: the
predicted peak plus VRAM_MARGIN_MB, the rule of the study's constraint and of the profile's
tiers) is clearly over the budget.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuner.gguf_info import GGUFInfo
from tuner.vram_need import free_vram_need_mb
from tuner.vram_predict import VramPrediction, learn_overhead, predict_vram

# Tolerance for the predictor's error, not a VRAM margin: its target accuracy is 5 %, so a
# setting whose predicted need is up to 5 % over the budget is still loaded and measured (the
# measurement, not the prediction, decides feasibility).
SKIP_MARGIN = 1.05


@dataclass
class VramGuard:
    info: GGUFInfo
    budget_mb: float
    overhead_mb: float
    pairs: list[tuple[float, float]] = field(default_factory=list)

    def predict(self, params: dict[str, Any]) -> VramPrediction:
        return predict_vram(self.info, params, self.overhead_mb)

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

    def learn(self, pred: VramPrediction, measured_mb: float) -> None:
        """Add one loaded trial; the overhead becomes the median gap over all of them."""
        self.pairs.append((pred.total_mb - pred.overhead_mb, measured_mb))
        self.overhead_mb = learn_overhead(self.pairs)


def seed_pairs(trials: list[Any]) -> list[tuple[float, float]]:
    """(predicted without overhead, measured) pairs of earlier trials, for a resumed study."""
    out = []
    for t in trials:
        pred = t.user_attrs.get("vram_predicted")
        vram = (t.user_attrs.get("metrics") or {}).get("vram_mb")
        if pred and vram is not None and t.user_attrs.get("status") == "ok":
            out.append((float(pred["total_mb"]) - float(pred["overhead_mb"]), float(vram)))
    return out
