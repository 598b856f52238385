"""What a study measures before sampling: the app's profiles, then dm-tune's start points."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.paths import default_config
from tuner.space import (
    Machine,
    check_start_knobs,
    load_baselines,
    load_search_space_config,
    load_starts,
    resolve,
    starting_trials,
)

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
        {"start": "cpu_fallback_app_context"},
    ]
    perf, start = plan[0][0], plan[3][0]
    assert perf["flash_attn"] is False and perf["n_ubatch"] == 512
    assert start == {**perf, "flash_attn": True, "n_batch": 1024, "n_ubatch": 1024}


def test_on_a_gpu_build_the_apps_cpu_fallback_is_also_measured_at_the_apps_context() -> None:
    # The profile's CPU tier needs a CPU-only trial at the floor; the app's own cpu_fallback
    # (n_ctx 2048) is below it, and the sampler seldom tries n_gpu_layers 0 on a GPU.
    plan = dict((next(iter(a.values())), p) for p, a in _plan(GPU))
    app, start = plan["cpu_fallback"], plan["cpu_fallback_app_context"]
    assert app["n_ctx"] == 2048 and start == {**app, "n_ctx": 4096}
    assert start["n_gpu_layers"] == 0
    floor = Machine(logical_cores=16, layers=33, gpu_offload=True, min_ctx=5000, trained_ctx=32768)
    raised = dict((next(iter(a.values())), p) for p, a in _plan(floor))
    assert raised["cpu_fallback_app_context"]["n_ctx"] == 8192  # a longer floor raises it


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


def _fit_plan(most_layers: int) -> list[tuple[dict[str, object], dict[str, str]]]:
    starts = load_starts(BASELINES, gpu_offload=True)
    return starting_trials(
        resolve(SPACE, GPU), load_baselines(BASELINES), starts, fit=lambda p: most_layers
    )


def test_a_model_larger_than_the_budget_starts_from_the_most_layers_that_fit() -> None:
    # The 13B-class case of the 6 GB card (docs/benchmarks/fit.md): every profile offloading
    # everything is skipped unloaded; the fit start is the search's only full-speed example.
    plan = _fit_plan(17)
    assert [a for _, a in plan][-2:] == [
        {"start": "fit_flash_attn"},
        {"start": "cpu_fallback_app_context"},
    ]
    fitted = plan[-2][0]
    assert fitted["n_gpu_layers"] == 17 and fitted["n_threads"] == GPU.logical_cores
    assert (fitted["flash_attn"], fitted["n_batch"], fitted["n_ubatch"]) == (True, 1024, 1024)


def test_the_fit_start_is_left_out_where_the_model_fits_whole_or_nothing_predicts() -> None:
    whole = [a for _, a in _fit_plan(GPU.layers)]
    assert {"start": "fit_flash_attn"} not in whole and {"start": "performance_flash_attn"} in whole
    no_prediction = [a for _, a in _plan(GPU)]  # no NVIDIA GPU reading: no VRAM predictor
    assert {"start": "fit_flash_attn"} not in no_prediction


def test_fit_and_all_are_the_only_words_a_start_may_use_for_numbers() -> None:
    known = set(type(SPACE).model_fields)
    check_start_knobs({"s": {"n_gpu_layers": "fit", "n_threads": "all"}}, known)
    with pytest.raises(UserError, match="sets n_threads to 'fit'; it must be an integer"):
        check_start_knobs({"s": {"n_threads": "fit"}}, known)


def test_most_layers_is_the_largest_count_whose_need_fits(demo_model: Path) -> None:
    from tuner.vram import VramGuard, free_vram_need_mb, read_gguf

    info = read_gguf(demo_model)
    settings = {"n_ctx": 4096, "n_batch": 512}
    whole = VramGuard(info, 1e6, 300.0)
    layers = info.block_count + 1
    assert whole.most_layers(settings, layers) == layers
    need = [whole.need_mb(whole.predict({**settings, "n_gpu_layers": n})) for n in (10, 11)]
    guard = VramGuard(info, (need[0] + need[1]) / 2, 300.0)  # room for 10 layers, not 11
    assert guard.most_layers(settings, layers) == 10
    assert VramGuard(info, free_vram_need_mb(0.0), 300.0).most_layers(settings, layers) == 0
