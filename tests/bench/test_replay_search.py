"""scripts/replay_search.py: the offline study replay and its trials-to-target counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest

from tuner.bench.replay_search import (
    Cell,
    Outcome,
    SeedResult,
    load_table,
    main,
    per_seed_results,
    replay,
    table_of,
    trials_to_balanced,
    trials_to_throughput,
)
from tuner.space import Machine, SearchSpace, key_of, load_search_space_config, resolve


@pytest.fixture
def space(small_space: Path) -> SearchSpace:
    # n_threads 1..2 x n_batch {32, 128} x n_ctx {256, 512}: 8 CPU settings.
    machine = Machine(logical_cores=2, layers=31, gpu_offload=False, min_ctx=200)
    return resolve(load_search_space_config(small_space), machine)


def _params(threads: int, batch: int, ctx: int) -> dict[str, Any]:
    return {"n_threads": threads, "n_batch": batch, "n_ctx": ctx, "n_gpu_layers": 0}


def _synthetic_cells() -> list[Cell]:
    """More threads: faster; larger batch: quicker first token; n_ctx: no effect."""
    cells = []
    for threads in (1, 2):
        for batch in (32, 128):
            for ctx in (256, 512):
                values = (20.0 * threads + batch / 64, 4000.0 / threads - batch)
                cells.append(Cell(_params(threads, batch, ctx), values))
    return cells


def _outcome(params: dict[str, Any], values: tuple[float, float] | None) -> Outcome:
    return Outcome(key_of(params), params, values, duplicate=False, baseline=None)


def test_trials_to_throughput_counts_the_first_trial_within_tolerance() -> None:
    run = [
        _outcome(_params(1, 32, 256), (10.0, 900.0)),
        _outcome(_params(1, 128, 256), None),  # a failed setting never counts
        _outcome(_params(2, 32, 256), (97.0, 500.0)),
        _outcome(_params(2, 128, 256), (99.0, 400.0)),
    ]
    assert trials_to_throughput(run, best=100.0, tol=0.02) == 4
    assert trials_to_throughput(run, best=100.0, tol=0.03) == 3
    assert trials_to_throughput(run, best=200.0, tol=0.02) is None


def test_trials_to_balanced_follows_choose_best_over_the_trials_so_far() -> None:
    # The balanced point of the whole table is (90, 150); alone, (100, 2000) and (10, 100)
    # would each be the export's choice at some point, but neither is within 2 % of it.
    run = [
        _outcome(_params(1, 32, 256), (100.0, 2000.0)),
        _outcome(_params(1, 32, 512), (10.0, 100.0)),
        _outcome(_params(2, 32, 256), (89.5, 151.0)),
    ]
    assert trials_to_balanced(run[:2], (90.0, 150.0), 0.02) is None
    assert trials_to_balanced(run, (90.0, 150.0), 0.02) == 3
    assert trials_to_balanced(run, (90.0, 150.0), 0.005) is None


def test_table_targets() -> None:
    table = table_of(_synthetic_cells())
    assert table.best_tok_s == pytest.approx(42.0)
    best = table.balanced_best()
    # (2 threads, batch 128) is best on both objectives; the tie on n_ctx goes to the larger.
    assert best.params == _params(2, 128, 512)


def test_replay_runs_the_real_suggest_and_counts_duplicates(space: SearchSpace) -> None:
    table = table_of(_synthetic_cells())
    sampler = optuna.samplers.TPESampler(seed=3, multivariate=True, n_startup_trials=4)
    run = replay(table, space, sampler, n_trials=20)
    assert len(run) == 20
    assert all(o.key in table.cells for o in run)
    seen: set[str] = set()
    for o in run:
        assert o.duplicate == (o.key in seen)
        seen.add(o.key)
    # 8 settings and 20 trials: at least 12 proposals repeat earlier ones.
    assert sum(o.duplicate for o in run) >= 12
    assert run == replay(
        table, space, optuna.samplers.TPESampler(seed=3, multivariate=True, n_startup_trials=4), 20
    )


def test_baselines_are_enqueued_first_and_fitted_to_the_space(space: SearchSpace) -> None:
    table = table_of(_synthetic_cells())
    profiles: dict[str, dict[str, Any]] = {
        "fast": {"n_gpu_layers": -1, "n_ctx": 4096, "n_batch": 512, "n_threads": 8},
        "slow": {"n_gpu_layers": 0, "n_ctx": 300, "n_batch": 30, "n_threads": 1},
    }
    run = replay(table, space, optuna.samplers.RandomSampler(seed=0), 5, profiles)
    assert [o.baseline for o in run[:2]] == ["fast", "slow"]
    assert run[0].params == _params(2, 128, 512)  # capped threads, nearest batch, largest ctx
    assert run[1].params == _params(1, 32, 512)
    seeds = per_seed_results([run], table, 0.02)
    assert seeds == [SeedResult(0, 1, 1, seeds[0].duplicates, 0)]


def test_load_table_reads_record_grid_csv(tmp_path: Path) -> None:
    csv = tmp_path / "grid.csv"
    csv.write_text(
        "n_threads,n_batch,n_ctx,use_mlock,n_gpu_layers,gen_tok_s,ttft_ms,warm_ttft_ms,"
        "prompt_tok_s,load_s,peak_rss_mb,status\n"
        "2,128,512,True,0,42.5,1800.0,300.0,350.0,0.2,210.0,ok\n"
        "1,32,512,False,0,,,,,,,timeout\n",
        encoding="utf-8",
    )
    table = load_table(csv)
    ok = {"n_threads": 2, "n_batch": 128, "n_ctx": 512, "n_gpu_layers": 0, "use_mlock": True}
    assert table.cells[key_of(ok)].values == (42.5, 1800.0)
    failed = {"n_threads": 1, "n_batch": 32, "n_ctx": 512, "n_gpu_layers": 0, "use_mlock": False}
    assert table.cells[key_of(failed)].values is None
    assert table.best_tok_s == 42.5


def test_a_cpu_grid_has_no_start_points_arm(capsys: pytest.CaptureFixture[str]) -> None:
    # The committed CPU grid: start points are gpu_only, so the study's default is the profiles.
    assert main(["--seeds", "1", "--trials", "3", "--samplers", "random"]) == 0
    text = capsys.readouterr().out
    assert "no start points for this build" in text
    assert "| random | none | 1 |" in text
    assert "| random | baselines | 1 |" in text
    assert "baselines + starts" not in text
