"""The VRAM predictor against the loaded trials of the "6 GB card" runs (docs/benchmarks/fit.md).

No GPU here: the figures are recorded, from docs/benchmarks/data/gpu/run5-pressure/ (NVIDIA
H200 held down to 6144 MiB free plus a 600 MiB "desktop", llama-cpp-python 0.3.36 built with
CUDA): per trial, NVML's per-process peak (`metrics.vram_mb`) and llama.cpp's own CUDA0 buffer
sizes (`llama_buffers`). The GGUFs are make_gguf's Mistral-7B shape and a 13B-class one
(40 blocks x 5120, no GQA), rebuilt from make_gguf's tensor list without writing them.
The guard is replayed as the study ran it: each trial predicted with what was learned from the
trials loaded before it.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest

from tuner.bench.make_gguf import SHAPES as GGUF_SHAPES
from tuner.bench.make_gguf import header_info as _info
from tuner.vram import GGUFInfo, VramGuard, gpu_layers

DATA = Path(__file__).resolve().parents[2] / "docs/benchmarks/data/gpu/run5-pressure"
MISTRAL, L13B = GGUF_SHAPES["mistral-7b"], GGUF_SHAPES["llama2-13b"]
SHAPES = {"7b-free": MISTRAL, "7b-over": MISTRAL, "13b-free": L13B, "13b-over": L13B}


def _loaded(name: str) -> list[optuna.trial.FrozenTrial]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{DATA / name}.db")
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("status") == "ok" and (t.user_attrs.get("metrics") or {}).get("vram_mb")
    ]


def _replay(name: str) -> list[tuple[int, float]]:
    """(trial, signed error %) of every loaded trial, predicted as the study would have."""
    trials = _loaded(name)
    info: GGUFInfo = _info(SHAPES[name], "Q4_0")
    probe_overhead = trials[0].user_attrs["vram_predicted"]["overhead_mb"]
    guard = VramGuard(info=info, budget_mb=1e9, overhead_mb=probe_overhead)
    out = []
    for t in trials:
        params = t.user_attrs["llama_kwargs"]
        measured = float(t.user_attrs["metrics"]["vram_mb"])
        pred = guard.predict(params)
        out.append((t.number, (pred.total_mb - measured) / measured * 100))
        guard.learn(params, pred, measured)
    return out


@pytest.mark.parametrize("name", ["7b-free", "7b-over"])
def test_every_loaded_7b_trial_is_predicted_within_5_percent(name: str) -> None:
    # As recorded (the predictor of the run): 22/23 and 21/22, worst +10.8 % (trial 8, flash
    # attention at 3 GPU layers, predicted with the overhead of trials without it).
    errors = _replay(name)
    assert len(errors) >= 20
    assert all(abs(e) <= 5 for _, e in errors), errors


def test_13b_trials_within_5_percent_but_the_first_of_each_class() -> None:
    # The first loaded trial (trial 2, the app's cpu_fallback, no layer offloaded) has only the
    # probe's overhead, measured by the old probe (a 3-token decode: no cuBLAS, no CUDA pool):
    # -26.9 %. The probe now decodes a full batch; that is checked on the next GPU run, not here.
    # The first trial with flash attention (trial 6) borrows the overhead of the trials without
    # it, ~160 MiB more than its own: +14.9 %, an over-estimate (the safe side: at worst a
    # setting near the budget is skipped). Every later trial: within 5 %.
    errors = dict(_replay("13b-free"))
    assert errors.pop(2) < -20 and 10 < errors.pop(6) < 20
    assert len(errors) >= 7 and all(abs(e) <= 5 for e in errors.values()), errors


def test_13b_over_budget_run_within_5_percent_but_the_first_of_each_class() -> None:
    # The same two firsts in the run with the budget above what is free (third GPU go: all 50
    # trials): the first loaded trial (-8.6 %, the app's cpu_fallback) and the first with flash
    # attention (trial 7, +14.9 %, the safe side). Every other loaded trial: within 5 %.
    errors = dict(_replay("13b-over"))
    assert -10 < errors.pop(2) < -5 and 10 < errors.pop(7) < 20
    assert len(errors) >= 25 and all(abs(e) <= 5 for e in errors.values()), errors


def test_partial_offload_compute_buffer_counts_a_ram_blocks_kv_copy() -> None:
    # CUDA0's compute buffer of every loaded trial with blocks on both sides: within 30 MiB of
    # the prediction (the K/V copy is 16-80 MiB; without it the 13B trials were 65-90 MiB under).
    # Known exception, on the safe side (second GPU go): the 13B-class model with a ubatch of
    # 512 or more is over-predicted by 46-99 MiB, about one block's K/V copy: at that size the
    # copy is not live at the graph's peak (the predictor adds it to the peak); see fit.md.
    gaps, over = [], []
    for name in SHAPES:
        info = _info(SHAPES[name], "Q4_0")
        for t in _loaded(name):
            params = t.user_attrs["llama_kwargs"]
            on_gpu = gpu_layers(info.block_count, int(params["n_gpu_layers"]))
            if not 0 < len(on_gpu - {info.block_count}) < info.block_count:
                continue
            measured = t.user_attrs["llama_buffers"]["CUDA0"]["compute"]
            gap = VramGuard(info, 1e9, 0.0).predict(params).compute_mb - measured
            large = name.startswith("13b") and int(params["n_ubatch"]) >= 512
            (over if large else gaps).append(gap)
    assert len(gaps) >= 15 and len(over) >= 10
    assert all(-30 <= g <= 30 for g in gaps), gaps
    assert all(30 < g <= 100 for g in over), over
    assert abs(statistics.median(gaps)) <= 15
