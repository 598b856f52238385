"""scripts/cpu_tier.py: the profile's CPU tier in its three variants, planned from a real
exported profile and measured by anchors' real children on the demo model (CPU): llama.cpp
accepts every variant's keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tuner.bench.anchors as anchors
from tuner.bench.cpu_tier import VARIANTS, cpu_tier_plan, main

ROOT = Path(__file__).resolve().parent.parent.parent
GPU_PROFILE = (
    ROOT / "docs" / "benchmarks" / "data" / "gpu" / "run5-pressure" / "profile-7b-free.yaml"
)
CPU_PROFILE = ROOT / "docs" / "benchmarks" / "data" / "cpu-demo-profile-3.yaml"


def test_plan_is_the_cpu_tier_in_each_variant(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    plan = cpu_tier_plan(GPU_PROFILE, model)
    names = [s["name"] for s in plan["settings"]]
    assert names == list(VARIANTS)
    base, no_op, no_dev = (s["llama"] for s in plan["settings"])
    assert base["n_gpu_layers"] == 0 and base["n_ctx"] == 4096  # the exported tier, untouched
    assert no_op == {**base, "op_offload": False}
    assert no_dev == {**base, "split_mode": 0, "main_gpu": -1}
    out = tmp_path / "plan.json"
    assert (
        main(["plan", "--profile", str(GPU_PROFILE), "--model", str(model), "--out", str(out)]) == 0
    )
    assert anchors.load_plan(out)["settings"] == plan["settings"]


def test_a_profile_that_is_not_one_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [1, 2]\n", encoding="utf-8")
    out = tmp_path / "plan.json"
    assert main(["plan", "--profile", str(bad), "--model", "m.gguf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot read profile {bad}") and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.slow
def test_every_variant_loads_and_answers_on_the_cpu(
    tmp_path: Path, demo_model: Path, workload_study: str
) -> None:
    storage = workload_study
    plan_path, out = tmp_path / "plan.json", tmp_path / "results.json"
    args = ["plan", "--profile", str(CPU_PROFILE), "--model", str(demo_model)]
    assert main([*args, "--out", str(plan_path)]) == 0
    rc = anchors.main(["measure", "--plan", str(plan_path), "--model", str(demo_model),
                       "--storage", storage, "--runs", "1", "--out", str(out)])  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert {r["setting"]: r["status"] for r in res["runs"]} == dict.fromkeys(VARIANTS, "ok")
    assert all(r["gen_tok_s"] > 0 for r in res["runs"])
