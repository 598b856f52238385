"""What a study measures before sampling: the app's profiles, then dm-tune's start points."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.baselines import check_start_knobs, load_baselines, load_starts, starting_trials
from tuner.errors import UserError
from tuner.paths import default_config
from tuner.search_space import Machine, load_search_space_config, resolve

GPU = Machine(logical_cores=16, layers=33, gpu_offload=True, min_ctx=781, trained_ctx=32768)
CPU = Machine(logical_cores=2, layers=31, gpu_offload=False, min_ctx=781, trained_ctx=8192)
SPACE = load_search_space_config(default_config("search_space.yaml"))
BASELINES = default_config("baselines.yaml")


def _plan(machine: Machine) -> list[tuple[dict[str, object], dict[str, str]]]:
    starts = load_starts(BASELINES, gpu_offload=machine.gpu_offload)
    return starting_trials(resolve(SPACE, machine), load_baselines(BASELINES), starts)


def test_on_a_gpu_build_the_flash_attention_start_follows_the_profiles() -> None:
    plan = _plan(GPU)
    assert [a for _, a in plan] == [
        {"baseline": "performance"},
        {"baseline": "balanced"},
        {"baseline": "cpu_fallback"},
        {"start": "performance_flash_attn"},
    ]
    perf, start = plan[0][0], plan[3][0]
    assert perf["flash_attn"] is False and perf["n_ubatch"] == 512
    assert start == {**perf, "flash_attn": True, "n_batch": 1024, "n_ubatch": 1024}


def test_a_cpu_build_measures_only_the_profiles() -> None:
    plan = _plan(CPU)
    assert [a for _, a in plan] == [
        {"baseline": "performance"},
        {"baseline": "balanced"},
        {"baseline": "cpu_fallback"},
    ]
    assert all("flash_attn" not in p and "n_ubatch" not in p for p, _ in plan)


def test_a_start_that_comes_out_as_a_profile_is_skipped(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text(
        "profiles:\n  p: {n_gpu_layers: -1, n_ctx: 4096, n_batch: 512, n_threads: 6}\n"
        "starts:\n  same: {from: p, gpu_only: false, set: {n_gpu_layers: 99}}\n",
        encoding="utf-8",
    )
    plan = starting_trials(resolve(SPACE, GPU), load_baselines(f), load_starts(f, gpu_offload=True))
    assert [a for _, a in plan] == [{"baseline": "p"}]


def test_a_start_from_an_unknown_profile_is_a_one_line_error(tmp_path: Path) -> None:
    f = tmp_path / "b.yaml"
    f.write_text(
        "profiles:\n  p: {n_gpu_layers: 0, n_ctx: 2048, n_batch: 128, n_threads: 4}\n"
        "starts:\n  s: {from: fast, set: {flash_attn: true}}\n",
        encoding="utf-8",
    )
    with pytest.raises(UserError, match="no profile named 'fast'"):
        load_starts(f, gpu_offload=True)


def test_a_start_with_an_unknown_knob_is_refused() -> None:
    with pytest.raises(UserError, match=r"unknown knob.*flash_attention"):
        check_start_knobs({"s": {"flash_attention": True}}, set(type(SPACE).model_fields))
