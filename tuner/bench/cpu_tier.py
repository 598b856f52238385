"""Does the profile's CPU tier stay off the GPU? (issue 11; docs/benchmarks/fit.md, "Noticed")

The `cpu_fallback` tier says it needs no free VRAM, but on a CUDA build `n_gpu_layers: 0` still
creates a CUDA context and, for a ubatch of 32 or more, puts the compute buffer on the GPU (op
offload): `verify` measured ~930 MB for it under pressure. The tier is the app's last resort for
a card with too little free VRAM, so what it really takes decides whether it works there.

    python3 scripts/cpu_tier.py plan --profile P.yaml --model M --out plan.json
    python3 scripts/anchors.py measure --plan plan.json --model M --storage URL --runs 3 ...
    python3 scripts/anchors.py table --results results.json --out table.md

`plan` writes an anchors plan (`scripts/anchors.py measure` measures it, interleaved, in fresh
processes) with the profile's CPU tier in three variants (`VARIANTS`): as exported; op offload
off (the prompt's matrix products stay on the CPU, no compute buffer on the GPU); and no GPU
device at all (`split_mode` 0 with `main_gpu` -1: llama.cpp's model load then clears its device
list, vendor/llama.cpp/src/llama.cpp, so no GPU buffer, no pinned host buffer, no op offload).
The table then shows VRAM, tok/s and first-token latency of each: what a GPU-free last tier
costs in speed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tuner.bench.anchors import PLAN_VERSION
from tuner.errors import UserError
from tuner.yaml_io import write_atomic

# name -> Llama(...) keys set on top of the tier's own
VARIANTS: dict[str, dict[str, Any]] = {
    "cpu tier as exported": {},
    "cpu tier, op offload off": {"op_offload": False},
    "cpu tier, no GPU device": {"split_mode": 0, "main_gpu": -1},
}


def cpu_tier_plan(profile: Path, model: Path) -> dict[str, Any]:
    """The anchors plan of the profile's CPU tier in each of `VARIANTS`."""
    from tuner.profile import ProfileError, load_profile

    try:
        p = load_profile(profile)
    except (OSError, ProfileError) as exc:
        raise UserError(f"cannot read profile {profile}: {exc}") from None
    cpu = [t for t in p.tiers if t.llama.n_gpu_layers == 0]
    if not cpu:
        raise UserError(f"{profile} has no tier with n_gpu_layers 0 (a CPU tier) to measure")
    tier = cpu[-1]
    return {
        "version": PLAN_VERSION,
        "model": {"path": str(model), "file": model.name},
        "profile": str(profile),
        "settings": [
            {
                "name": name,
                "group": "cpu tier",
                "llama": {**tier.llama.kwargs(), **extra},
                "note": f"profile {profile.name}, tier {tier.name}",
                "below_floor": False,
            }
            for name, extra in VARIANTS.items()
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cpu_tier.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="the profile's CPU tier in each variant, as an anchors plan")
    p.add_argument("--profile", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    try:
        plan = cpu_tier_plan(a.profile, a.model)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_atomic(a.out, json.dumps(plan, indent=1) + "\n")
    print(f"{len(plan['settings'])} settings -> {a.out}")
    return 0
