"""VRAM prediction inside a study: predict before loading, learn the machine's overhead.

The part of a process's VRAM that the GGUF can't tell (CUDA context, cuBLAS workspace, staging
buffers) is `overhead_mb`. It starts as measured by the probe (a load with no layer offloaded)
and is refined as the median gap between measured and predicted VRAM of the loaded trials.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuner.gguf_info import GGUFInfo
from tuner.vram_predict import VramPrediction, learn_overhead, predict_vram

# Skip a trial without loading only when the prediction is clearly over budget: the target
# accuracy is 5%, so a prediction just above the budget still gets measured.
SKIP_MARGIN = 1.05


@dataclass
class VramGuard:
    info: GGUFInfo
    budget_mb: float
    overhead_mb: float
    pairs: list[tuple[float, float]] = field(default_factory=list)

    def predict(self, params: dict[str, Any]) -> VramPrediction:
        return predict_vram(self.info, params, self.overhead_mb)

    def over_budget(self, pred: VramPrediction) -> bool:
        return pred.total_mb > self.budget_mb * SKIP_MARGIN

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
