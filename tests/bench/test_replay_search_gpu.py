"""scripts/replay_search.py on a GPU-shaped grid: the real GPU grid space, a synthetic table.

The table is made up (it is the input of the code under test, not a measurement): tok/s grows
with offloaded layers, flash attention adds 10 %, VRAM grows by 160 MB a layer, so that full
offload (33 layers) needs more than the 6144 MB budget free (peak + VRAM_MARGIN_MB, the study's
rule) and the best feasible cell has 32 layers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import optuna
import pytest

from tuner.bench.record_grid import METRICS, TABLE_TAIL, space_meta
from tuner.bench.replay_search import (
    BUDGET_MB,
    Cell,
    Outcome,
    enqueued_trials,
    fit_to_grid,
    grid,
    main,
    missing_keys,
    on_grid,
    parse_fixed,
    replay,
    table_of,
    trials_to_throughput,
)
from tuner.space import (
    Machine,
    SearchSpace,
    key_of,
    load_baselines,
    load_search_space_config,
    load_starts,
    resolve,
)
from tuner.vram import VRAM_MARGIN_MB, free_vram_need_mb

ROOT = Path(__file__).resolve().parents[2]
BASELINES = ROOT / "configs" / "baselines.yaml"
GPU_SPACE = ROOT / "docs" / "benchmarks" / "data" / "gpu_grid_space.yaml"
FIXED = {"use_mlock": True}
MACHINE = Machine(logical_cores=16, layers=33, gpu_offload=True, min_ctx=700, trained_ctx=32768)


@pytest.fixture
def space() -> SearchSpace:
    return resolve(load_search_space_config(GPU_SPACE), MACHINE)


def _tok_s(layers: int, flash: bool) -> float:
    cpu_share = (33 - layers) / 33
    return (1.1 if flash else 1.0) / (cpu_share / 7.0 + (1 - cpu_share) / 300.0)


def _vram(layers: int) -> float:
    # 33 layers: a 5924 MB peak needs 6180 MB free, over the budget
    return 900.0 + 160.0 * layers - VRAM_MARGIN_MB


def _cells(space: SearchSpace) -> list[Cell]:
    return [
        Cell(
            p,
            (_tok_s(p["n_gpu_layers"], p["flash_attn"]), 5000.0 - 100 * p["n_gpu_layers"]),
            _vram(p["n_gpu_layers"]),
        )
        for p in grid(space, FIXED)
    ]


def test_gpu_space_is_layers_times_flash_attn_with_the_performance_profile(
    space: SearchSpace,
) -> None:
    cells = grid(space, FIXED)
    assert len(cells) == 34 * 2
    assert {c["n_gpu_layers"] for c in cells} == set(range(34))
    fixed = {"n_threads": 6, "n_batch": 512, "n_ctx": 4096, "use_mlock": True}
    assert all(c.items() >= fixed.items() for c in cells)
    assert {c["flash_attn"] for c in cells} == {False, True}
    assert all(set(c) == {*fixed, "n_gpu_layers", "flash_attn"} for c in cells)


def test_baselines_are_fitted_onto_grid_cells(space: SearchSpace) -> None:
    profiles = load_baselines(ROOT / "configs" / "baselines.yaml")
    keys = {key_of(c) for c in grid(space, FIXED)}
    fitted = {n: on_grid(space, fit_to_grid(space, p), FIXED) for n, p in profiles.items()}
    assert all(key_of(p) in keys for p in fitted.values())
    # performance and balanced ("35" layers, n_ctx 2048, n_batch 256) are the same cell here.
    assert fitted["performance"] == fitted["balanced"]
    perf = fitted["performance"]
    assert (perf["n_gpu_layers"], perf["flash_attn"]) == (33, False)
    # cpu_fallback's 8 threads are outside the space's 6..6: moved to 6, mlock fixed on.
    assert fitted["cpu_fallback"]["n_threads"] == 6
    assert fitted["cpu_fallback"]["use_mlock"] is True
    assert fitted["cpu_fallback"]["n_gpu_layers"] == 0


def test_start_points_are_enqueued_as_the_study_enqueues_them(space: SearchSpace) -> None:
    profiles = load_baselines(BASELINES)
    starts = load_starts(BASELINES, gpu_offload=space.machine.gpu_offload)
    plan = enqueued_trials(space, profiles, starts)
    assert [a for _, a in plan] == [
        {"baseline": "performance"},
        {"baseline": "balanced"},
        {"baseline": "cpu_fallback"},
        {"start": "performance_flash_attn"},
    ]
    # flash_attn true, n_batch 1024 -> the grid's 512, n_ubatch dropped (not in this space):
    # the start point is the performance cell with flash attention on.
    start = on_grid(space, plan[3][0], FIXED)
    assert start == {**on_grid(space, plan[0][0], FIXED), "flash_attn": True}
    assert start in grid(space, FIXED)
    # No start points: the profiles alone, exactly as fit_to_grid fits each of them.
    assert [p for p, _ in enqueued_trials(space, profiles)] == [
        fit_to_grid(space, p) for p in profiles.values()
    ]
    assert enqueued_trials(space, None) == []
    # A CPU build gets no gpu_only start.
    assert load_starts(BASELINES, gpu_offload=False) == {}


def test_replay_enqueues_profiles_then_start_points(space: SearchSpace) -> None:
    table = table_of(_cells(space))
    profiles = load_baselines(BASELINES)
    starts = load_starts(BASELINES, gpu_offload=True)
    run = replay(table, space, optuna.samplers.RandomSampler(seed=0), 6, profiles, FIXED, starts)
    assert [o.baseline for o in run[:4]] == [
        "performance",
        "balanced",
        "cpu_fallback",
        "performance_flash_attn",
    ]
    assert (run[3].params["n_gpu_layers"], run[3].params["flash_attn"]) == (33, True)
    assert run[4].baseline is None  # sampled from here on
    bare = replay(table, space, optuna.samplers.RandomSampler(seed=0), 6, None, FIXED, None)
    assert all(o.baseline is None for o in bare)


def test_feasibility_comes_from_each_cells_vram(space: SearchSpace) -> None:
    table = table_of(_cells(space))
    over = [c for c in table.cells.values() if table.constraint(c) > 0]
    assert {c.params["n_gpu_layers"] for c in over} == {33}
    assert table.best_tok_s == pytest.approx(_tok_s(32, True))
    assert table.balanced_best().params["n_gpu_layers"] == 32
    # An over-budget proposal never meets the target, however fast it is.
    top = next(c for c in over if c.params["flash_attn"])
    run = [Outcome(key_of(top.params), top.params, top.values, False, None, 36.0)]
    assert trials_to_throughput(run, table.best_tok_s, 0.02) is None


def test_replay_sets_the_measured_vram_constraint(space: SearchSpace) -> None:
    table = table_of(_cells(space))
    profiles = load_baselines(ROOT / "configs" / "baselines.yaml")
    sampler = optuna.samplers.TPESampler(seed=1, multivariate=True, n_startup_trials=10)
    run = replay(table, space, sampler, 25, profiles, FIXED)
    assert [o.baseline for o in run[:3]] == ["performance", "balanced", "cpu_fallback"]
    assert run[1].duplicate  # balanced is the performance cell again
    for o in run:
        assert o.params["use_mlock"] is True
        need = free_vram_need_mb(_vram(o.params["n_gpu_layers"]))
        assert o.constraint == pytest.approx(need - BUDGET_MB)
    assert run[0].constraint > 0  # performance: full offload, over this table's budget


def test_missing_cells_are_found(space: SearchSpace) -> None:
    cells = _cells(space)
    table = table_of(cells[:-3])
    assert missing_keys(table, space, FIXED) == [key_of(c.params) for c in cells[-3:]]
    assert missing_keys(table_of(cells), space, FIXED) == []


def test_parse_fixed() -> None:
    assert parse_fixed(["use_mlock=true", "n_ubatch=256"]) == {"use_mlock": True, "n_ubatch": 256}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        parse_fixed(["use_mlok=true"])


def _write_grid(path: Path, space: SearchSpace, cells: list[Cell]) -> None:
    settings = list(cells[0].params)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[*settings, *METRICS, *TABLE_TAIL], restval="")
        w.writeheader()
        for c in cells:
            assert c.values is not None
            w.writerow(
                {
                    **c.params,
                    "gen_tok_s": c.values[0],
                    "ttft_ms": c.values[1],
                    "vram_mb": c.vram_mb,
                    "status": "ok",
                    "runs": 1,
                }
            )
    meta: dict[str, Any] = {
        "machine": {"logical_cores": 16},
        "space": space_meta(space, FIXED, GPU_SPACE),
    }
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")


def test_main_replays_a_gpu_grid_csv(
    space: SearchSpace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gpu_grid.csv"
    _write_grid(path, space, _cells(space))
    out = tmp_path / "replay.json"
    args = ["--grid", str(path), "--space", str(GPU_SPACE), "--seeds", "2", "--trials", "15"]
    assert main([*args, "--samplers", "tpe", "random", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 over the 6144 MB VRAM budget" in text
    assert "baseline cpu_fallback: flash_attn=False,n_batch=512,n_ctx=4096,n_gpu_layers=0" in text
    detail = json.loads(out.read_text(encoding="utf-8"))
    assert set(detail) == {
        f"{s}|{arm}|seeds=2" for s in ("tpe", "random") for arm in ("none", "baselines", "starts")
    }
    assert "start performance_flash_attn: flash_attn=True,n_batch=512,n_ctx=4096," in text
    assert "| tpe | baselines + starts | 2 |" in text
    # With a larger budget full offload is feasible, and the best: the start point is that cell,
    # so the study's default arm (profiles, then start points) reaches it at trial 4.
    md = tmp_path / "replay.md"
    args8 = [*args, "--samplers", "random", "--vram-budget-mb", "8192", "--json", str(out)]
    main([*args8, "--arms", "starts", "--markdown", str(md)])
    assert f"best {_tok_s(33, True):.2f} tok/s" in capsys.readouterr().out
    detail = json.loads(out.read_text(encoding="utf-8"))
    assert set(detail) == {"random|starts|seeds=2"}
    assert [p["throughput"] for p in detail["random|starts|seeds=2"]["per_seed"]] == [4, 4]
    text = md.read_text(encoding="utf-8")
    assert text.startswith("`python scripts/replay_search.py --grid ")
    assert "\nstart performance_flash_attn: flash_attn=True," in text
    assert "\n| random | baselines + starts | 2 | 4 [4-4] | 2/2 |" in text


def test_main_refuses_an_incomplete_grid_unless_told(
    space: SearchSpace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "gpu_grid.csv"
    _write_grid(path, space, _cells(space)[:-1])  # the best cell (33 layers, flash) missing
    args = ["--grid", str(path), "--space", str(GPU_SPACE), "--seeds", "1", "--trials", "5"]
    with pytest.raises(SystemExit, match="lacks 1 of the space's settings"):
        main([*args, "--samplers", "random"])
    assert main([*args, "--samplers", "random", "--allow-missing"]) == 0
    assert "1 settings not measured; replayed as failed trials" in capsys.readouterr().out


def test_main_refuses_another_space(space: SearchSpace, tmp_path: Path) -> None:
    path = tmp_path / "gpu_grid.csv"
    _write_grid(path, space, _cells(space))
    other = tmp_path / "space.yaml"
    other.write_text(GPU_SPACE.read_text(encoding="utf-8").replace("[4096]", "[2048]"), "utf-8")
    with pytest.raises(SystemExit, match="not the search space the grid was recorded on"):
        main(["--grid", str(path), "--space", str(other), "--samplers", "random"])
