from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from tuner.errors import UserError
from tuner.paths import default_config
from tuner.space import Machine, key_of, load_search_space_config, resolve

GPU = Machine(logical_cores=16, layers=33, gpu_offload=True, min_ctx=700, trained_ctx=32768)
CPU = Machine(logical_cores=2, layers=31, gpu_offload=False, min_ctx=700, trained_ctx=8192)


def test_default_space_resolves_for_the_model_and_machine() -> None:
    cfg = load_search_space_config(default_config("search_space.yaml"))
    space = resolve(cfg, GPU)
    assert space.n_ctx_choices == (1024, 2048, 4096, 8192)  # 700 tokens needed
    s2 = resolve(cfg, Machine(16, 33, True, min_ctx=1500))
    assert s2.n_ctx_choices == (2048, 4096, 8192)
    assert any("not searched: below the context floor (1500)" in n for n in s2.notices)


def test_a_profile_below_the_floor_keeps_its_n_ctx_and_a_start_point_is_raised() -> None:
    from tuner.space import starting_trials

    cfg = load_search_space_config(default_config("search_space.yaml"))
    space = resolve(cfg, Machine(16, 33, True, min_ctx=4096))
    assert space.n_ctx_choices == (4096, 8192)
    app = {"n_gpu_layers": 35, "n_ctx": 2048, "n_batch": 256, "n_threads": 6}
    assert space.fit_baseline(app)["n_ctx"] == 2048  # measured as the app runs it
    assert space.fit_baseline({**app, "n_ctx": 3000})["n_ctx"] == 3000
    assert space.fit_baseline({**app, "n_ctx": 5000})["n_ctx"] == 8192  # above: onto the grid
    plan = starting_trials(space, {"balanced": app}, {"mine": {**app, "n_batch": 512}})
    assert [(p["n_ctx"], a) for p, a in plan] == [
        (2048, {"baseline": "balanced"}),
        (4096, {"start": "mine"}),
    ]


def test_sampled_values_stay_in_bounds() -> None:
    space = resolve(load_search_space_config(default_config("search_space.yaml")), GPU)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(30):
        t = study.ask()
        p = space.suggest(t)
        assert 1 <= p["n_threads"] <= 16
        assert 0 <= p["n_gpu_layers"] <= 33
        assert p["n_ctx"] >= 700
        assert "flash_attn" in p  # searched on a GPU build by default
        assert p["n_ubatch"] <= p["n_batch"]  # so is n_ubatch, never above n_batch
        study.tell(t, [1.0, 1.0])


def test_cpu_build_fixes_gpu_layers_to_zero_with_a_notice() -> None:
    space = resolve(load_search_space_config(default_config("search_space.yaml")), CPU)
    study = optuna.create_study(directions=["maximize", "minimize"])
    t = study.ask()
    p = space.suggest(t)
    assert p["n_gpu_layers"] == 0 and "flash_attn" not in p and "n_ubatch" not in p
    assert any("n_gpu_layers fixed to 0" in n for n in space.notices)


@pytest.mark.parametrize("layers", [-1, 33, 35, 43, 99])
def test_all_layers_normalize_to_one_value(layers: int) -> None:
    space = resolve(load_search_space_config(default_config("search_space.yaml")), GPU)
    p = space.normalize({"n_gpu_layers": layers, "n_ctx": 2048, "n_batch": 512})
    assert p["n_gpu_layers"] == 33
    assert key_of(p) == key_of(space.normalize({"n_gpu_layers": -1, "n_ctx": 2048, "n_batch": 512}))


def test_ubatch_never_above_batch_and_quantized_v_needs_flash_attention() -> None:
    space = resolve(load_search_space_config(default_config("search_space.yaml")), GPU)
    p = space.normalize({"n_batch": 64, "n_ubatch": 512, "type_v": "q8_0", "flash_attn": False})
    assert p["n_ubatch"] == 64 and p["type_v"] == "f16"


def test_baseline_is_fitted_to_the_grid() -> None:
    space = resolve(load_search_space_config(default_config("search_space.yaml")), CPU)
    p = space.fit_baseline(
        {"n_gpu_layers": -1, "n_ctx": 4096, "n_batch": 500, "n_threads": 8, "use_mlock": True}
    )
    assert p == {
        "n_gpu_layers": 0,
        "n_ctx": 4096,
        "n_batch": 512,
        "n_threads": 2,
        "use_mlock": True,
    }


def test_workload_larger_than_every_ctx_choice_is_explained(tmp_path: Path) -> None:
    cfg = load_search_space_config(default_config("search_space.yaml"))
    with pytest.raises(UserError, match="context floor is 9000 tokens"):
        resolve(cfg, Machine(2, 31, False, min_ctx=9000))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("n_thread: {low: 1, high: 2}\n", "unknown key 'n_thread'"),
        ("n_threads: {low: 4, high: 2}\n", "low \\(4\\) is above high \\(2\\)"),
        ("n_batch: {choices: [0, 64]}\n", "positive"),
        ("type_k: {enabled: true, choices: [q9_9]}\n", "unknown KV cache type"),
        ("n_ctx: {choices: []}\n", "n_ctx"),
    ],
)
def test_bad_yaml_is_one_clear_error(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("version: 1\n" + text)
    with pytest.raises(UserError, match=match):
        load_search_space_config(p)


def test_baselines_get_llama_cpps_default_ubatch_where_ubatch_is_searched() -> None:
    cfg = load_search_space_config(default_config("search_space.yaml"))
    perf = {"n_gpu_layers": -1, "n_ctx": 4096, "n_batch": 512, "n_threads": 6}
    small = {**perf, "n_batch": 128}
    gpu, cpu = resolve(cfg, GPU), resolve(cfg, CPU)
    assert gpu.fit_baseline(perf)["n_ubatch"] == 512
    assert gpu.fit_baseline(small)["n_ubatch"] == 128  # llama.cpp caps it at n_batch
    assert "n_ubatch" not in cpu.fit_baseline(perf)


def test_quality_affecting_flags_are_read_per_kv_knob(tmp_path: Path) -> None:
    """Flagged whether or not the search varies the knob: a start point may set it."""
    assert load_search_space_config(default_config("search_space.yaml")).quality_affecting() == (
        "type_k",
        "type_v",
    )
    space = tmp_path / "space.yaml"
    space.write_text("version: 1\ntype_k: {enabled: true, quality_affecting: false}\n")
    assert load_search_space_config(space).quality_affecting() == ("type_v",)
