"""The workload dict a measuring child receives, built from configs/workload.yaml.

Same shape as tuner.prepare.Context.workload_spec (what `dm-tune run` sends), so that `dm-tune
verify` re-measures a tier exactly the way the study measured it.
"""

from __future__ import annotations

from typing import Any

from objectives.workload import Workload


def workload_spec(w: Workload, repeats: int | None = None) -> dict[str, Any]:
    return {
        "prompt": w.prompt(),
        "next_prompt": w.next_prompt(),
        "max_tokens": w.max_tokens,
        "temperature": w.temperature,
        "top_p": w.top_p,
        "seed": w.seed,
        "warmup": w.warmup,
        "repeats": repeats or w.repeats,
    }
