"""Replay dm-tune's study offline against a recorded grid: how many trials until it finds the best?

Each replayed trial goes through the real SearchSpace.suggest (on the space record_grid.py
resolved for the grid's machine), looks its normalized settings up in the table
(values = [gen_tok_s, ttft_ms]) and sets the VRAM constraint a trial gets from the cell's
measured vram_mb against --vram-budget-mb (tuner.vram.over_budget_mb, the study's rule;
a cell without a VRAM reading, e.g. every CPU cell, is feasible). A proposal whose settings were
already tried costs a trial slot, as in the real study (which reuses the earlier result without
measuring again); the replay counts those duplicates.

    python scripts/replay_search.py                       # CPU grid, 20 seeds, default samplers
    python scripts/replay_search.py --seeds 10 --samplers tpe random
    # the GPU grid (its metadata: DIR/gpu_grid.json)
    python scripts/replay_search.py --grid DIR/gpu_grid.csv \
        --space docs/benchmarks/data/gpu_grid_space.yaml
    # only the study's default (profiles, then start points); results to files
    python scripts/replay_search.py ... --arms starts --json OUT.json --markdown OUT.md

Knobs a search-space YAML cannot fix (use_mlock: true) were recorded with record_grid.py --fixed;
the replay adds them to every proposal, as read from the grid's metadata.

What is enqueued before sampling, per --arms (each sampler runs every arm):
  none       nothing: the sampler alone;
  baselines  Desktop-Mate's profiles (configs/baselines.yaml `profiles:`);
  starts     the profiles, then dm-tune's start points (`starts:`, those for the grid's build:
             gpu_only ones only on a GPU grid), which is what tuner/study/_study.py enqueues by
             default.
The list comes from the study's own tuner.space.starting_trials (SearchSpace.fit_baseline,
a start that comes out as a profile skipped); then any integer knob outside the space's range is
moved to the nearest value the space can sample (snap_to_grid), so that each is a recorded cell.
On a CPU grid there are no start points, so the `starts` arm is `baselines` and is not run again.

Metric per seed: the first trial (1-based) after which the best feasible tok/s found so far is
within --tolerance of the table's best feasible tok/s; and the first trial after which
tuner.study.choose_best ("balanced") over the trials so far is within the tolerance of the
table's balanced choice on both objectives. Not reached within --trials: reported as censored.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial

from tuner.paths import ROOT, default_config
from tuner.profile import Prefer
from tuner.space import (
    Machine,
    SearchSpace,
    SearchSpaceConfig,
    check_start_knobs,
    key_of,
    load_baselines,
    load_search_space_config,
    load_starts,
    resolve,
    starting_trials,
)
from tuner.study import (
    DIRECTIONS,
    RunSettings,
    TrialRecord,
    choose_best,
    constraint_values,
    enqueue,
    made_trial,
    record_settings,
    set_constraints,
)
from tuner.vram import over_budget_mb

SamplerFactory = Callable[[int], optuna.samplers.BaseSampler]
BUDGET_MB = RunSettings.vram_budget_mb  # the default; every CPU trial is feasible under it
# Llama(...) settings a search space can hold: the CSV columns that are settings, not metrics.
SETTING_NAMES = tuple(k for k in SearchSpaceConfig.model_fields if k != "version")


def parse_value(text: str) -> bool | int | str:
    """A setting as a grid CSV or the command line writes it: True/true, 512, q8_0."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t)
    except ValueError:
        return t


def parse_fixed(items: Iterable[str]) -> dict[str, Any]:
    """NAME=VALUE pairs (record_grid.py --fixed) as settings."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in SETTING_NAMES:
            raise ValueError(f"--fixed {item!r}: use NAME=VALUE, NAME one of {SETTING_NAMES}")
        out[name] = parse_value(value)
    return out


def params_of_row(row: Mapping[str, str | None]) -> dict[str, Any]:
    """The settings of one grid CSV row (an empty column: a knob the grid does not pass)."""
    return {k: parse_value(v) for k, v in row.items() if k in SETTING_NAMES and v}


def axes(space: SearchSpace) -> dict[str, list[Any]]:
    """Every value SearchSpace.suggest can give each knob, in suggest's order (read from the
    distributions of one throwaway trial, so the grid is exactly what the study samples)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    finally:
        optuna.logging.set_verbosity(verbosity)
    space.suggest(trial)
    out: dict[str, list[Any]] = {}
    for name, d in trial.distributions.items():
        if isinstance(d, IntDistribution):
            out[name] = list(range(d.low, d.high + 1, d.step))
        elif isinstance(d, CategoricalDistribution):
            out[name] = list(d.choices)
        else:
            raise TypeError(f"{name}: {d!r} is not a grid axis")
    return out


def on_grid(space: SearchSpace, params: dict[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as the grid ran them: with the knobs the space YAML cannot fix (--fixed) added."""
    return space.normalize({**params, **fixed}) if fixed else params


def grid(space: SearchSpace, fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every normalized setting SearchSpace.suggest can return (plus `fixed`), in suggest order."""
    ax = axes(space)
    cells: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*ax.values()):
        p = on_grid(space, space.normalize(dict(zip(ax, combo, strict=True))), fixed or {})
        cells.setdefault(key_of(p), p)
    return list(cells.values())


def snap_to_grid(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """Settings the study enqueues (already fitted with SearchSpace.fit_baseline) with each
    integer knob the space fixes or bounds (cpu_fallback's 8 threads in a 6-thread space) moved to
    the nearest value the space can sample, so that they are a recorded cell. On a space that
    already holds every fitted value (the CPU grid) this changes nothing."""
    p = dict(params)
    for name, values in axes(space).items():
        v = p.get(name)
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in values)
        if isinstance(v, int) and not isinstance(v, bool) and ints and v not in values:
            p[name] = min(values, key=lambda x: abs(x - v))
    return p


def fit_to_grid(space: SearchSpace, profile: Mapping[str, Any]) -> dict[str, Any]:
    """One profile as the replay enqueues it: fitted as tuner/study/_study.py fits it
    (tuner.space.starting_trials), then snapped to the grid (snap_to_grid)."""
    [(params, _)] = starting_trials(space, {"profile": dict(profile)}, {})
    return snap_to_grid(space, params)


Enqueued = list[tuple[dict[str, Any], dict[str, str]]]


def enqueued_trials(
    space: SearchSpace,
    baselines: Mapping[str, Mapping[str, Any]] | None,
    starts: Mapping[str, Mapping[str, Any]] | None = None,
) -> Enqueued:
    """What the replay enqueues before sampling, in order, with the role the study gives
    each ({"baseline": name} or {"start": name}): tuner.space.starting_trials, as
    tuner/study/_study.py calls it, then each snapped to the grid. The study drops a start that
    fits to a profile's settings before any snapping; one that only meets a profile's cell after
    snapping is still enqueued here (a duplicate proposal: it costs its slot, as the off-grid
    trial the study would measure does)."""
    plan = starting_trials(
        space,
        {n: dict(p) for n, p in (baselines or {}).items()},
        {n: dict(p) for n, p in (starts or {}).items()},
    )
    return [(snap_to_grid(space, params), attrs) for params, attrs in plan]


def _tpe(**kw: Any) -> SamplerFactory:
    def make(seed: int) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, **kw)

    return make


SAMPLERS: dict[str, SamplerFactory] = {
    # Exactly tuner/study/_study.py's sampler.
    "tpe": _tpe(multivariate=True, n_startup_trials=10),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe-startup5": _tpe(multivariate=True, n_startup_trials=5),
    "tpe-group": _tpe(multivariate=True, group=True, n_startup_trials=10),
    "tpe-univariate": _tpe(multivariate=False, n_startup_trials=10),
    "nsga2-pop10": lambda seed: optuna.samplers.NSGAIISampler(population_size=10, seed=seed),
}
DEFAULT_SAMPLERS = ("tpe", "random", "tpe-startup5", "tpe-group", "nsga2-pop10")


class Cell(NamedTuple):
    params: dict[str, Any]
    values: tuple[float, float] | None  # (gen_tok_s, ttft_ms); None: the setting failed
    vram_mb: float | None = None  # measured peak VRAM; None: no GPU reading (feasible)


@dataclass(frozen=True)
class Table:
    """Recorded outcome of every setting, by normalized key."""

    cells: dict[str, Cell]
    budget_mb: float = BUDGET_MB

    def constraint(self, cell: Cell) -> float:
        """vram_over_budget_mb as the study sets it for this cell (feasible: <= 0)."""
        return over_budget_mb(cell.vram_mb, self.budget_mb)

    def feasible(self) -> list[Cell]:
        return [c for c in self.cells.values() if c.values is not None and self.constraint(c) <= 0]

    @property
    def best_tok_s(self) -> float:
        return max(v[0] for c in self.feasible() if (v := c.values) is not None)

    def balanced_best(self) -> Cell:
        """The cell choose_best("balanced") picks when every setting has been tried."""
        trials = [
            _frozen(i, c.params, c.values, self.constraint(c))
            for i, c in enumerate(self.feasible())
        ]
        best = choose_best(trials, Prefer.BALANCED)
        assert best is not None
        return self.cells[key_of(TrialRecord.from_frozen(best).settings)]


def _frozen(
    number: int,
    params: dict[str, Any],
    values: tuple[float, float] | None,
    constraint: float = -BUDGET_MB,
) -> FrozenTrial:
    return made_trial(
        number,
        params,
        list(values) if values is not None else None,
        {"vram_over_budget_mb": constraint},
    )


def load_table(path: Path, budget_mb: float = BUDGET_MB) -> Table:
    """A grid CSV from record_grid.py: settings columns, then metrics (vram_mb if recorded)
    and status."""
    cells: dict[str, Cell] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            params = params_of_row(row)
            ok = row["status"] == "ok" and row["gen_tok_s"] != ""
            values = (float(row["gen_tok_s"]), float(row["ttft_ms"])) if ok else None
            vram = row.get("vram_mb") or ""
            cells[key_of(params)] = Cell(params, values, float(vram) if vram else None)
    return table_of(cells.values(), budget_mb)


def table_of(cells: Iterable[Cell], budget_mb: float = BUDGET_MB) -> Table:
    return Table({key_of(c.params): c for c in cells}, budget_mb)


def space_for_grid(meta: dict[str, Any], search_space: Path) -> SearchSpace:
    """The space record_grid.py measured, resolved exactly as the study resolves it.

    Grids that record their Machine (meta space.machine) are resolved on it. The committed CPU
    grid predates that: there layers and trained_ctx are the demo model's (SmolLM2-135M:
    30 blocks + output, 8192); neither changes a CPU space whose n_ctx choices all fit.
    """
    sp = meta["space"]
    if "machine" in sp:
        machine = Machine(**sp["machine"])
    else:
        machine = Machine(
            logical_cores=int(meta["machine"]["logical_cores"]),
            layers=31,
            gpu_offload=False,
            min_ctx=int(sp["min_ctx"]),
            trained_ctx=8192,
        )
    config = load_search_space_config(search_space)
    if "config" in sp and config.model_dump(mode="json") != sp["config"]:
        raise SystemExit(f"{search_space} is not the search space the grid was recorded on")
    space = resolve(config, machine)
    if list(space.n_ctx_choices) != list(sp["n_ctx"]):
        raise SystemExit(f"n_ctx choices {space.n_ctx_choices} differ from the grid's")
    return space


def missing_keys(table: Table, space: SearchSpace, fixed: Mapping[str, Any]) -> list[str]:
    """Keys of the space's settings the table lacks (a recording cut off early)."""
    return [k for c in grid(space, fixed) if (k := key_of(c)) not in table.cells]


class Outcome(NamedTuple):
    """One replayed trial."""

    key: str
    params: dict[str, Any]
    values: tuple[float, float] | None
    duplicate: bool  # these settings were already proposed earlier in this run
    baseline: str | None  # the profile or start point enqueued for this trial; None: sampled
    constraint: float = -BUDGET_MB  # vram_over_budget_mb; feasible when <= 0


class TrialFailedError(Exception):
    """The table says these settings failed; the study records a failed trial and goes on."""


def replay(
    table: Table,
    space: SearchSpace,
    sampler: optuna.samplers.BaseSampler,
    n_trials: int,
    baselines: Mapping[str, Mapping[str, Any]] | None = None,
    fixed: Mapping[str, Any] | None = None,
    starts: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[Outcome]:
    """Run a study like tuner/study/_study.py's, with table lookups instead of trial children.

    `baselines`, `starts`: the profiles and start points to enqueue first (enqueued_trials).
    `fixed`: settings the grid added to every cell (record_grid.py --fixed)."""
    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    for params, attrs in enqueued_trials(space, baselines, starts):
        enqueue(study, params, attrs)
    seen: set[str] = set()
    out: list[Outcome] = []

    def objective(trial: optuna.Trial) -> list[float]:
        params = on_grid(space, space.suggest(trial), fixed or {})
        key = key_of(params)
        record_settings(trial, params, key)
        cell = table.cells.get(key)
        if cell is None:
            raise KeyError(f"settings not in the table: {key}")
        constraint = table.constraint(cell)
        enqueued = TrialRecord.from_running(trial)
        baseline = enqueued.baseline or enqueued.start
        out.append(Outcome(key, params, cell.values, key in seen, baseline, constraint))
        seen.add(key)
        if cell.values is None:
            raise TrialFailedError(key)
        n_ctx = int(params["n_ctx"])  # the grid holds no n_ctx below the floor
        set_constraints(trial, constraint_values(cell.vram_mb, table.budget_mb, n_ctx, n_ctx))
        return list(cell.values)

    study.optimize(objective, n_trials=n_trials, catch=(TrialFailedError,))
    return out


def trials_to_throughput(outcomes: Sequence[Outcome], best: float, tol: float) -> int | None:
    """1-based trial after which the best feasible tok/s so far is within `tol` of `best`;
    None: never."""
    for i, o in enumerate(outcomes, 1):
        if o.values is not None and o.constraint <= 0 and o.values[0] >= best * (1.0 - tol):
            return i
    return None


def trials_to_balanced(
    outcomes: Sequence[Outcome], target: tuple[float, float], tol: float
) -> int | None:
    """1-based trial after which choose_best("balanced") so far is within `tol` of `target`
    on both objectives (tok/s not below, first-token latency not above); None: never."""
    trials: list[FrozenTrial] = []
    for i, o in enumerate(outcomes, 1):
        trials.append(_frozen(i - 1, o.params, o.values, o.constraint))
        best = choose_best(trials, Prefer.BALANCED)
        if (
            best is not None
            and best.values[0] >= target[0] * (1.0 - tol)
            and best.values[1] <= target[1] * (1.0 + tol)
        ):
            return i
    return None


ARMS = {
    "none": "none",
    "baselines": "baselines",
    "starts": "baselines + starts",
}


class Summary(NamedTuple):
    sampler: str
    arm: str  # what was enqueued first: a key of ARMS
    seeds: int
    reached: int  # seeds that reached the throughput target within the trial budget
    median: float | None  # trials to the throughput target (censored seeds count as budget+1)
    q1: float | None
    q3: float | None
    bal_reached: int
    bal_median: float | None
    bal_q1: float | None
    bal_q3: float | None
    duplicates_mean: float  # duplicate proposals per run, within the trials to the target or all


def quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


class SeedResult(NamedTuple):
    seed: int
    throughput: int | None  # trials to the tok/s target; None: not within the budget
    balanced: int | None  # trials to the balanced target
    duplicates: int  # duplicate proposals in the whole run
    duplicates_to_target: int  # ... among the trials up to the tok/s target


def per_seed_results(
    runs: Sequence[Sequence[Outcome]], table: Table, tol: float
) -> list[SeedResult]:
    best = table.best_tok_s
    target = table.balanced_best().values
    assert target is not None
    out = []
    for seed, run in enumerate(runs):
        t = trials_to_throughput(run, best, tol)
        b = trials_to_balanced(run, target, tol)
        dup_to = sum(o.duplicate for o in run[: t or len(run)])
        out.append(SeedResult(seed, t, b, sum(o.duplicate for o in run), dup_to))
    return out


def _stats(xs: Sequence[int | None], n_trials: int) -> tuple[int, float, float, float]:
    """Seeds that reached, median, Q1, Q3 (a seed that never reached counts as budget + 1)."""
    q1, med, q3 = quartiles([float(x) if x is not None else n_trials + 1.0 for x in xs])
    return sum(x is not None for x in xs), med, q1, q3


def summarize(
    sampler: str,
    arm: str,
    runs: Sequence[Sequence[Outcome]],
    table: Table,
    tol: float,
    n_trials: int,
) -> tuple[Summary, list[SeedResult]]:
    per_seed = per_seed_results(runs, table, tol)
    r, m, q1, q3 = _stats([p.throughput for p in per_seed], n_trials)
    br, bm, bq1, bq3 = _stats([p.balanced for p in per_seed], n_trials)
    dup = statistics.fmean(p.duplicates for p in per_seed)
    s = Summary(sampler, arm, len(runs), r, m, q1, q3, br, bm, bq1, bq3, dup)
    return s, per_seed


def _fmt(x: float | None, n_trials: int) -> str:
    if x is None:
        return "-"
    return f">{n_trials}" if x > n_trials else f"{x:g}"


def markdown(rows: Sequence[Summary], n_trials: int) -> str:
    head = (
        "| sampler | enqueued first | seeds | tok/s target: median [IQR] | reached | "
        "balanced target: median [IQR] | reached | duplicates / run |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for s in rows:

        def f(x: float | None) -> str:
            return _fmt(x, n_trials)

        lines.append(
            f"| {s.sampler} | {ARMS[s.arm]} | {s.seeds} | "
            f"{f(s.median)} [{f(s.q1)}-{f(s.q3)}] | {s.reached}/{s.seeds} | "
            f"{f(s.bal_median)} [{f(s.bal_q1)}-{f(s.bal_q3)}] | {s.bal_reached}/{s.seeds} | "
            f"{s.duplicates_mean:.1f} of {n_trials} |"
        )
    return head + "\n".join(lines) + "\n"


def _vram(cell: Cell) -> str:
    return f", {cell.vram_mb:.0f} MB VRAM" if cell.vram_mb is not None else ""


def _parser() -> argparse.ArgumentParser:
    data = ROOT / "docs" / "benchmarks" / "data"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", "--table", dest="table", type=Path, default=data / "cpu_grid.csv")
    ap.add_argument(
        "--meta", type=Path, default=None, help="the grid's metadata (default: GRID with .json)"
    )
    ap.add_argument(
        "--space",
        "--search-space",
        dest="search_space",
        type=Path,
        default=default_config("search_space.yaml"),
        help="the search-space YAML the grid was recorded on",
    )
    ap.add_argument(
        "--baselines",
        type=Path,
        default=default_config("baselines.yaml"),
        help="the profiles and start points (the study's --baselines file)",
    )
    ap.add_argument(
        "--arms",
        nargs="+",
        default=list(ARMS),
        choices=ARMS,
        help="what to enqueue before sampling: nothing, the profiles, the profiles and the start "
        "points (the study's default); default: all three",
    )
    ap.add_argument("--vram-budget-mb", type=float, default=BUDGET_MB)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--trials", type=int, default=50, help="trial budget per run (dm-tune's)")
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--samplers", nargs="+", default=list(DEFAULT_SAMPLERS), choices=SAMPLERS)
    ap.add_argument("--json", type=Path, default=None, help="write per-seed results here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the results table here")
    ap.add_argument(
        "--allow-missing",
        action="store_true",
        help="replay a table that lacks some of the space's settings (a recording cut off "
        "early), counting each missing one as a failed trial; results are then biased",
    )
    return ap


def _load(a: argparse.Namespace) -> tuple[Table, SearchSpace, dict[str, Any]]:
    """The grid's table, its space and fixed settings; settings it lacks replay as failed."""
    table = load_table(a.table, a.vram_budget_mb)
    meta_path = a.meta or a.table.with_suffix(".json")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    space = space_for_grid(meta, a.search_space)
    fixed: dict[str, Any] = dict(meta["space"].get("fixed") or {})
    missing = missing_keys(table, space, fixed)
    if missing and not a.allow_missing:
        raise SystemExit(
            f"{a.table} lacks {len(missing)} of the space's settings (e.g. {missing[0]}); "
            "record them (record_grid.py ... --resume) or pass --allow-missing"
        )
    if missing:
        failed = {k: Cell(c, None) for c in grid(space, fixed) if (k := key_of(c)) in missing}
        table = Table({**table.cells, **failed}, table.budget_mb)
        print(f"WARNING: {len(missing)} settings not measured; replayed as failed trials")
    return table, space, fixed


def _note(notes: list[str], line: str) -> None:
    notes.append(line)
    print(line)


def _describe(
    a: argparse.Namespace,
    table: Table,
    space: SearchSpace,
    fixed: dict[str, Any],
    first: tuple[dict[str, Any], dict[str, Any]],  # the profiles, the start points
    notes: list[str],
) -> None:
    """What the table holds: its best settings, and where the enqueued trials land on it."""
    best = table.best_tok_s
    bal = table.balanced_best()
    near = sum(1 for c in table.feasible() if c.values and c.values[0] >= best * (1 - a.tolerance))
    over = sum(1 for c in table.cells.values() if c.values and table.constraint(c) > 0)
    _note(
        notes,
        f"table: {len(table.cells)} settings, best {best:.2f} tok/s; {near} within "
        f"{a.tolerance:.0%} of it; balanced choice {key_of(bal.params)} {bal.values}"
        + (f"; {over} over the {table.budget_mb:.0f} MB VRAM budget" if over else ""),
    )
    top = sorted(table.feasible(), key=lambda c: -(c.values or (0.0, 0.0))[0])[:5]
    for c in top:
        _note(notes, f"  top tok/s: {key_of(c.params)} -> {c.values}{_vram(c)}")
    for params, attrs in enqueued_trials(space, *first):
        [(kind, name)] = attrs.items()
        fitted = on_grid(space, params, fixed)
        cell = table.cells[key_of(fitted)]
        _note(notes, f"{kind} {name}: {key_of(fitted)} -> {cell.values}{_vram(cell)}")


def _replay_arms(
    a: argparse.Namespace,
    table: Table,
    space: SearchSpace,
    fixed: dict[str, Any],
    first: tuple[dict[str, Any], dict[str, Any]],  # the profiles, the start points
    arms: list[str],
) -> tuple[list[Summary], dict[str, Any]]:
    """Every sampler on every arm, over the seeds: the summaries (after 10, 20 and all seeds)
    and the per-seed detail."""
    profiles, starts = first
    rows: list[Summary] = []
    detail: dict[str, Any] = {}
    for name in a.samplers:
        for arm in arms:
            t0 = time.perf_counter()
            enq = {
                "none": ({}, {}),
                "baselines": (profiles, {}),
                "starts": (profiles, starts),
            }[arm]
            runs = [
                replay(table, space, SAMPLERS[name](seed), a.trials, enq[0], fixed, enq[1])
                for seed in range(a.seeds)
            ]
            for n in sorted({*(c for c in (10, 20) if c < a.seeds), a.seeds}):
                s, per_seed = summarize(name, arm, runs[:n], table, a.tolerance, a.trials)
                rows.append(s)
                detail[f"{name}|{arm}|seeds={n}"] = {
                    "summary": s._asdict(),
                    "per_seed": [p._asdict() for p in per_seed],
                }
            print(f"{name} ({ARMS[arm]}): {time.perf_counter() - t0:.1f} s", flush=True)
    return rows, detail


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    table, space, fixed = _load(a)
    profiles = load_baselines(a.baselines)
    starts = load_starts(a.baselines, gpu_offload=space.machine.gpu_offload)
    check_start_knobs(starts, set(SETTING_NAMES))
    notes: list[str] = []
    _describe(a, table, space, fixed, (profiles, starts), notes)
    arms = list(dict.fromkeys(a.arms))
    if "starts" in arms and not starts:
        _note(
            notes,
            "no start points for this build: the `starts` arm is the `baselines` arm; not run",
        )
        arms.remove("starts")
    rows, detail = _replay_arms(a, table, space, fixed, (profiles, starts), arms)
    print()
    table_md = markdown(rows, a.trials)
    print(table_md)
    if a.json:
        a.json.write_text(json.dumps(detail, indent=1) + "\n", encoding="utf-8")
    if a.markdown:
        command = " ".join(["python scripts/replay_search.py", *(argv or sys.argv[1:])])
        a.markdown.write_text(
            f"`{command}`\n\n```\n" + "\n".join(notes) + f"\n```\n\n{table_md}",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
