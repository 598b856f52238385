"""A profile for the real demo model, built in the test (a real study would take minutes).

The CPU tier is real settings for the demo GGUF; its recorded speed comes from the caller (an
actual measurement, or a deliberately wrong figure). The GPU tier asks for more free VRAM than
any machine has, so it is always reported as skipped, with or without a GPU.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tuner.machine import DEMO_MODEL_SHA256
from tuner.profile import Profile
from tuner.profile.build import write_profile
from tuner.vram import VRAM_MARGIN_MB

UNREACHABLE_MB = 10_000_000


def _tier(name: str, need: float, ngl: int, n_ctx: int, tok_s: float) -> dict[str, Any]:
    return {
        "name": name,
        "min_vram_free_mb": need,
        # one thread: a shared 2-core machine slows a 2-thread llama.cpp far more than one
        "llama": {
            "n_gpu_layers": ngl,
            "n_ctx": n_ctx,
            "n_batch": 128,
            "n_threads": 1,
            "use_mlock": False,
        },
        "measured": {
            "trial": 0,
            "n": 3,
            "gen_tok_s": {"median": tok_s, "cv": 0.05},
            "ttft_ms": {"median": 100.0, "cv": 0.05},
            "vram_mb": None if ngl == 0 else need - VRAM_MARGIN_MB,  # the one VRAM rule
        },
        "description": "test tier",
        "vram_estimate": "0.0 GB",
        "speed_estimate": f"~{tok_s:.0f} tok/s",
        "recommended_for": "tests",
    }


def write_demo_profile(
    path: Path, model: Path, *, tok_s: float, n_ctx: int = 512, sha256: str = DEMO_MODEL_SHA256
) -> Path:
    profile = Profile.from_dict(
        {
            "version": 1,
            "model": {"file": model.name, "size_bytes": model.stat().st_size, "sha256": sha256},
            "provenance": {
                "gpu": None,
                "driver": None,
                "cpu": "test CPU",
                "llama_cpp_version": "0.3.36",
                "study": "test",
                "storage": "sqlite://",
                "trials": [0],
                "created": datetime.now(timezone.utc),
                "dm_tune_version": "0.1.0",
                "vram_budget_mb": 6144.0,
                "prefer": "balanced",
            },
            "default_tier": "performance",
            "tiers": [
                _tier("performance", UNREACHABLE_MB, 31, n_ctx, tok_s * 3),
                _tier("cpu_fallback", 0, 0, n_ctx, tok_s),
            ],
        }
    )
    write_profile(path, profile)
    return path


CPU_SETTINGS = {"n_gpu_layers": 0, "n_ctx": 512, "n_batch": 128, "n_threads": 1, "use_mlock": False}
