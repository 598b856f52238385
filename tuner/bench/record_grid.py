"""Measure every setting of a search space once, for the offline sampler benchmark.

Each cell of the grid (every normalized setting SearchSpace.suggest can return on this machine:
by default the CPU space, n_threads x n_batch x usable n_ctx x use_mlock, n_gpu_layers 0) runs
in a fresh trial child through objectives.launch.ColdLauncher, exactly as a study trial does, with
the default workload but repeats=1 (one measured answer per run, to keep the whole grid
affordable). Each pass measures the grid in its own shuffled order, so slow spells from other
load on the machine do not line up with one setting.

The machine may be shared: before each run the script waits (up to --max-wait s; 0: not at all)
for a second in which other processes use fewer than --quiet cores, and records how many cores
they used during the run (`others_cores`: all CPU time of the machine minus this process and its
children, per second of the run). Cells that got no quiet run are measured again (--retries
rounds) while time is left; a cell's row is the median of its quiet runs, or of all its runs when
none was quiet (`quiet_runs` = 0 says so). Without --max-minutes the passes run to the end and
re-measuring stops after 15 minutes; with it, no run starts after that long (passes included).

GPU grid (--gpu): the space comes from --space (docs/benchmarks/data/gpu_grid_space.yaml), the
machine offloads (Machine.gpu_offload) and each run samples the child's VRAM through NVML
(ColdLauncher(sample_gpu=True)) into `vram_mb`; no waiting for quiet cores and no re-measuring
unless asked for. Knobs a search-space YAML cannot fix (use_mlock
true: "enabled: false" means "not passed") are added to every cell with --fixed NAME=VALUE and
kept in the metadata, where replay_search.py reads them.

    python scripts/record_grid.py                  # writes docs/benchmarks/data/cpu_grid.*
    python scripts/record_grid.py --limit 4 --out-dir /tmp/grid   # quick look
    python scripts/record_grid.py --gpu --model M.gguf --fixed use_mlock=true \\
        --space docs/benchmarks/data/gpu_grid_space.yaml --max-tokens 8 --no-next-turn \\
        --max-minutes 4.5 --out-dir DIR

Outputs (NAME: cpu_grid, or gpu_grid with --gpu; see --name): NAME.csv (one row per cell),
NAME_runs.csv (every run, with its pass, order, others_cores and load average), NAME.json
(machine, versions, workload digest, space, timing, CVs). The table and metadata are rewritten
after every run, so a recording cut off early leaves the cells done (`complete: false`);
--resume measures the rest.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import platform
import random
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import optuna
import psutil

from objectives.launch import ChildResult, ColdLauncher, Launcher, TrialSpec
from objectives.workload import Workload
from tuner.bench.replay_search import axes, grid, params_of_row, parse_fixed
from tuner.errors import UserError
from tuner.machine import Hardware, Probe, detect, ensure_demo_model, run_probe
from tuner.model_file import sha256_cached
from tuner.paths import ROOT, default_config
from tuner.space import Machine, SearchSpace, key_of, load_search_space_config, resolve
from tuner.study import settings_digest
from tuner.vram import GGUFInfo, read_gguf
from tuner.yaml_io import load_model

METRICS = (
    "gen_tok_s",
    "ttft_ms",
    "warm_ttft_ms",
    "prompt_tok_s",
    "load_s",
    "peak_rss_mb",
    "vram_mb",
)
TABLE_TAIL = ("status", "runs", "quiet_runs", "others_cores")
RUN_TAIL = (
    "status",
    "others_cores",
    "wall_s",
    "waited_s",
    "loadavg_1m",
    "vram_source",
    "reason",
)
CPU_NOTE = "shared machine: other engineers ran tests at the same time"


def setting_columns(cells: Sequence[dict[str, Any]]) -> list[str]:
    """The settings the cells hold, in suggest's order (the CSV's first columns)."""
    return list(dict.fromkeys(k for c in cells for k in c))


def row_of(params: dict[str, Any], res: ChildResult, settings: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {k: params.get(k, "") for k in settings}
    m = res.metrics.to_dict() if res.metrics is not None else {}
    for k in METRICS:
        v = m.get(k)
        row[k] = round(float(v), 4) if v is not None else ""
    row["status"] = res.status if res.metrics is not None or res.status != "ok" else "failed"
    return row


def _quiet_runs(runs: list[dict[str, Any]], quiet: float) -> list[dict[str, Any]]:
    return [r for r in runs if r["status"] == "ok" and r["others_cores"] <= quiet]


def median_row(runs: list[dict[str, Any]], quiet: float, settings: Sequence[str]) -> dict[str, Any]:
    """Median over the quiet runs of a cell, or over all its runs when none was quiet."""
    ok = _quiet_runs(runs, quiet) or [r for r in runs if r["status"] == "ok"]
    row = {k: runs[0][k] for k in settings}
    for k in METRICS:
        vals = [float(r[k]) for r in ok if r[k] != ""]
        row[k] = round(statistics.median(vals), 4) if vals else ""
    row["status"] = "ok" if ok else runs[-1]["status"]
    row["runs"] = len(ok)
    row["quiet_runs"] = len(_quiet_runs(runs, quiet))
    row["others_cores"] = round(statistics.median(r["others_cores"] for r in ok), 2) if ok else ""
    return row


def _read_runs(
    path: Path, by_cell: dict[str, list[dict[str, Any]]], settings: Sequence[str]
) -> int:
    """Runs an earlier invocation wrote, added to `by_cell`; returns how many."""
    n = 0
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            params = params_of_row(r)
            key = key_of(params)
            if key in by_cell:
                row: dict[str, Any] = {k: params.get(k, "") for k in settings}
                row.update({k: r.get(k) or "" for k in (*METRICS, "status")})
                row["others_cores"] = float(r["others_cores"])
                by_cell[key].append(row)
                n += 1
    return n


def _busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (steal not included)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0))


def _own_s() -> float:
    """CPU seconds of this process and its finished children (the trial children)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_quiet(threshold: float, max_wait: float) -> float:
    """Wait (up to max_wait s) for a second in which other processes use < threshold cores.

    max_wait <= 0: return at once (a dedicated machine, e.g. the GPU one)."""
    if max_wait <= 0:
        return 0.0
    t0 = time.perf_counter()
    while True:
        b0, o0, s0 = _busy_s(), _own_s(), time.perf_counter()
        time.sleep(1.0)
        others = ((_busy_s() - b0) - (_own_s() - o0)) / (time.perf_counter() - s0)
        if others < threshold or time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0


def measure(spec: TrialSpec, timeout: float, launcher: Launcher) -> tuple[ChildResult, float]:
    """One trial child, and the cores other processes used on average meanwhile."""
    b0, o0 = _busy_s(), _own_s()
    res = launcher.run(spec, timeout)
    others = ((_busy_s() - b0) - (_own_s() - o0)) / max(res.wall_s, 1e-3)
    return res, max(0.0, others)


def cv_summary(by_cell: dict[str, list[dict[str, Any]]], quiet: float | None) -> dict[str, Any]:
    """Per-metric coefficient of variation between runs of a cell, over the cells measured
    twice or more (only their quiet runs when `quiet` is given)."""
    out: dict[str, Any] = {}
    for k in ("gen_tok_s", "ttft_ms"):
        cvs = []
        for runs in by_cell.values():
            use = _quiet_runs(runs, quiet) if quiet is not None else runs
            vals = [float(r[k]) for r in use if r["status"] == "ok" and r[k] != ""]
            if len(vals) >= 2 and statistics.fmean(vals) > 0:
                cvs.append(statistics.stdev(vals) / statistics.fmean(vals))
        if cvs:
            out[k] = {
                "cells": len(cvs),
                "median_cv": round(statistics.median(cvs), 4),
                "max_cv": round(max(cvs), 4),
            }
    return out


def _rel(path: Path) -> str:
    full = path.resolve()
    return str(full.relative_to(ROOT)) if full.is_relative_to(ROOT) else str(path)


def _write_atomic(path: Path, text: str) -> None:
    """Replace `path` in one step, so a run killed mid-write leaves the previous version."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)


def _csv_text(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(columns))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def space_meta(space: SearchSpace, fixed: dict[str, Any], search_space: Path) -> dict[str, Any]:
    """What the replay needs to resolve the same space (and what a reader wants to see)."""
    c, m = space.config, space.machine
    ax = axes(space)
    return {
        "file": _rel(search_space),
        "n_threads": list(space._bounds(c.n_threads, m.logical_cores)),
        "n_batch": list(c.n_batch.choices),
        "n_ctx": list(space.n_ctx_choices),
        "use_mlock": [False, True] if c.use_mlock.enabled else None,
        "n_gpu_layers": [ax["n_gpu_layers"][0], ax["n_gpu_layers"][-1]] if m.gpu_offload else 0,
        "min_ctx": m.min_ctx,
        "notices": list(space.notices),
        "axes": ax,
        "fixed": fixed,
        "machine": asdict(m),
        "config": c.model_dump(mode="json"),
    }


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: the demo model)")
    ap.add_argument("--workload", type=Path, default=default_config("workload.yaml"))
    ap.add_argument(
        "--space",
        "--search-space",
        dest="search_space",
        type=Path,
        default=default_config("search_space.yaml"),
    )
    ap.add_argument(
        "--fixed",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add this setting to every cell (a knob the space YAML cannot fix, e.g. "
        "use_mlock=true); repeatable",
    )
    ap.add_argument(
        "--gpu",
        action="store_true",
        help="offload as the study does on a GPU build and read each run's VRAM through NVML; "
        "also makes --max-wait 0, --quiet inf and --retries 0 the defaults (a dedicated machine)",
    )
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "benchmarks" / "data")
    ap.add_argument("--name", default=None, help="output file stem (cpu_grid; gpu_grid with --gpu)")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="measured answers per run")
    ap.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="tokens per measured answer (default: the workload's); fewer keep a grid "
        "with slow partial-offload cells affordable",
    )
    ap.add_argument(
        "--no-next-turn",
        action="store_true",
        help="skip the workload's next turn (warm_ttft_ms, not an objective by default) to save "
        "time; the measured answer is unchanged",
    )
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per trial child")
    ap.add_argument("--limit", type=int, default=None, help="measure only the first N cells")
    ap.add_argument("--seed", type=int, default=0, help="seed of the per-pass shuffles")
    _add_pacing_args(ap)
    return ap


def _add_pacing_args(ap: argparse.ArgumentParser) -> None:
    """When runs start and stop: quiet cores, niceness, resuming, re-measuring, time limit."""
    ap.add_argument(
        "--quiet",
        type=float,
        default=None,
        help="a run is quiet when other processes used fewer cores than this meanwhile "
        "(default 0.25; inf: every run is)",
    )
    ap.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="s to wait for quiet per run (default 3; 0: never wait)",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="add this to the scheduling niceness of this process and its trial children "
        "(negative, as root: take CPU time from other work on a shared machine)",
    )
    ap.add_argument("--resume", action="store_true", help="keep the runs already in NAME_runs.csv")
    ap.add_argument(
        "--retries", type=int, default=None, help="re-measure rounds for noisy cells (default 2)"
    )
    ap.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="start no run after this long, passes included (default: no limit on the passes, "
        "no re-measuring after 15 minutes)",
    )
    ap.add_argument("--note", default=None, help="a line on the conditions, for the metadata")


def _machine_defaults(a: argparse.Namespace) -> None:
    """The quiet-core machinery is for a shared CPU machine; the GPU machine is dedicated."""
    if a.quiet is None:
        a.quiet = math.inf if a.gpu else 0.25
    if a.max_wait is None:
        a.max_wait = 0.0 if a.gpu else 3.0
    if a.retries is None:
        a.retries = 0 if a.gpu else 2


@dataclass(frozen=True)
class _Grid:
    """What the grid measures: the model, the workload, the machine and the cells."""

    info: GGUFInfo
    workload: Workload
    spec_w: dict[str, Any]  # the workload as each trial child measures it
    max_tokens: int
    probe: Probe
    hw: Hardware
    space: SearchSpace
    fixed: dict[str, Any]
    cells: list[dict[str, Any]]
    settings: list[str]  # the cells' setting columns


def _load_grid(a: argparse.Namespace, ap: argparse.ArgumentParser, fixed: dict[str, Any]) -> _Grid:
    """Model, workload, probe and machine; the space resolved for it and its cells."""
    model = a.model or ensure_demo_model()
    info = read_gguf(model)
    workload = load_model(a.workload, Workload)
    max_tokens = a.max_tokens or workload.gen_tokens
    spec_w = workload.spec(repeats=a.repeats, next_turn=not a.no_next_turn)
    spec_w["max_tokens"] = max_tokens
    texts = [workload.prompt()] + ([workload.next_prompt() or ""] if workload.next_turn else [])
    probe = run_probe(info.path, texts, smoke=False)
    hw = detect()
    if a.gpu and not probe.gpu_offload:
        raise SystemExit("--gpu: this llama-cpp-python cannot offload to a GPU (dm-tune doctor)")
    if a.gpu and not hw.gpus:
        raise SystemExit("--gpu: NVML sees no NVIDIA GPU, so VRAM cannot be read")
    machine = Machine(
        logical_cores=hw.logical_cores,
        layers=info.offloadable_layers,
        gpu_offload=a.gpu,
        min_ctx=max(probe.n_tokens) + max_tokens,
        trained_ctx=info.context_length,
    )
    try:
        space = resolve(load_search_space_config(a.search_space), machine)
        ax = axes(space)
    except (ValueError, UserError) as e:  # e.g. a fixed n_threads above the logical cores
        raise SystemExit(f"{a.search_space} does not fit this machine: {e}") from e
    sampled = sorted(set(ax) & set(fixed))
    if sampled:
        ap.error(f"--fixed {', '.join(sampled)}: the space samples it; fix it in the YAML")
    cells = grid(space, fixed)[: a.limit]
    return _Grid(
        info, workload, spec_w, max_tokens, probe, hw, space, fixed, cells, setting_columns(cells)
    )


def _print_header(a: argparse.Namespace, g: _Grid) -> None:
    hw, probe = g.hw, g.probe
    print(
        f"{hw.cpu}, {hw.logical_cores} logical cores"
        + (f", {hw.gpus[0].name}" if a.gpu else "")
        + f"; llama-cpp-python {probe.llama_cpp_version}; prompt {max(probe.n_tokens)} tokens, "
        f"{g.max_tokens} generated; n_ctx {list(g.space.n_ctx_choices)}; "
        f"{len(g.cells)} cells x {a.passes} pass(es), repeats={a.repeats}"
        + (f"; fixed {g.fixed}" if g.fixed else ""),
        flush=True,
    )


def _meta(
    a: argparse.Namespace, g: _Grid, runs_path: Path, started: str, argv: list[str] | None
) -> dict[str, Any]:
    """The grid's metadata before its first run (write_outputs adds the totals)."""
    hw, probe = g.hw, g.probe
    note = a.note if a.note is not None else (None if a.gpu else CPU_NOTE)
    gpu_meta = [asdict(gpu) for gpu in hw.gpus] if a.gpu else None
    return {
        "version": 1,
        "what": f"dm-tune {'GPU' if a.gpu else 'CPU'} grid: one row per setting, medians over "
        f"passes (every run in {runs_path.name})",
        "started_utc": started,
        "machine": {
            "cpu": hw.cpu,
            "physical_cores": hw.physical_cores,
            "logical_cores": hw.logical_cores,
            "ram_mb": round(hw.ram_mb),
            "os": hw.os,
            "gpus": [gpu.name for gpu in hw.gpus],
            **({"gpu_details": gpu_meta} if gpu_meta else {}),
            **({"note": note} if note else {}),
        },
        "python": platform.python_version(),
        "llama_cpp_version": probe.llama_cpp_version,
        "system_info": probe.system_info,
        "model": {"file": g.info.path.name, "sha256": None},
        "workload": {
            "file": _rel(a.workload),
            "digest": settings_digest(g.spec_w),
            "digest_default_repeats": settings_digest(g.workload.spec()),
            "repeats": a.repeats,
            "prompt_tokens": max(probe.n_tokens),
            "max_tokens": g.max_tokens,
            "max_tokens_workload": g.workload.gen_tokens,
            "next_turn": g.spec_w["next_prompt"] is not None,
        },
        "space": space_meta(g.space, g.fixed, a.search_space),
        "gpu": a.gpu,
        "passes": a.passes,
        "retries": a.retries,
        "max_minutes": a.max_minutes,
        "niceness": os.nice(0),
        "cells": len(g.cells),
        "quiet_threshold_cores": a.quiet if math.isfinite(a.quiet) else None,  # None: any
        "command": "python scripts/record_grid.py " + " ".join(argv or sys.argv[1:]),
    }


@dataclass
class _Recorder:
    """Measures cells one run at a time: each run is appended to the runs file, and the table
    and the metadata are rewritten whole, so a grid cut off keeps what it measured."""

    a: argparse.Namespace
    g: _Grid
    launcher: Launcher
    by_cell: dict[str, list[dict[str, Any]]]
    meta: dict[str, Any]
    table_path: Path
    meta_path: Path
    t_start: float
    kept: int  # runs kept from an earlier recording (--resume)
    runs: csv.DictWriter[str]  # appends to the runs file (open while runs are made)
    runs_file: TextIO
    n: int = 0  # runs made by this one

    def write_outputs(self, complete: bool) -> list[dict[str, Any]]:
        """The table of the cells measured so far, and the metadata; both replaced whole."""
        a, g, by_cell = self.a, self.g, self.by_cell
        columns = (*g.settings, *METRICS, *TABLE_TAIL)
        runs = [by_cell[key_of(c)] for c in g.cells]
        table = [median_row(r, a.quiet, g.settings) for r in runs if r]
        _write_atomic(self.table_path, _csv_text(columns, table))
        self.meta.update(
            {
                "wall_s": round(time.perf_counter() - self.t_start, 1),
                "complete": complete and len(table) == len(g.cells),
                "cells_done": len(table),
                "runs_total": self.kept + self.n,
                "cells_with_quiet_run": sum(1 for r in table if r["quiet_runs"]),
                "between_runs_cv_all": cv_summary(by_cell, None),
                "between_runs_cv_quiet": cv_summary(by_cell, a.quiet),
            }
        )
        _write_atomic(self.meta_path, json.dumps(self.meta, indent=2, allow_nan=False) + "\n")
        return table

    def run_cell(self, params: dict[str, Any], label: str, order: int) -> None:
        a = self.a
        waited = wait_quiet(a.quiet, a.max_wait)
        spec = TrialSpec.of(self.g.info.path, params, self.g.spec_w)
        res, others = measure(spec, a.timeout, self.launcher)
        row = row_of(params, res, self.g.settings)
        row["others_cores"] = round(others, 2)
        self.by_cell[key_of(params)].append(row)
        self.runs.writerow(
            {
                "pass": label,
                "order": order,
                **row,
                "wall_s": round(res.wall_s, 2),
                "waited_s": round(waited, 1),
                "loadavg_1m": round(os.getloadavg()[0], 2),
                "vram_source": res.gpu.vram_source or "",
                "reason": res.reason,
            }
        )
        self.runs_file.flush()
        self.n += 1
        self.write_outputs(complete=False)
        vram = f", {row['vram_mb']} MB" if row["vram_mb"] != "" else ""
        print(
            f"[{self.n}] {label} {key_of(params)}: {row['status']} {row['gen_tok_s']} tok/s, "
            f"ttft {row['ttft_ms']} ms{vram} ({res.wall_s:.1f} s, waited {waited:.0f} s, "
            f"others {others:.2f} cores; elapsed {time.perf_counter() - self.t_start:.0f} s)",
            flush=True,
        )


def _passes(rec: _Recorder, rng: random.Random, deadline: float) -> bool:
    """Each pass measures, in a new shuffled order, every cell with fewer quiet runs than its
    number. True when the time limit cut it off."""
    a, by_cell = rec.a, rec.by_cell
    for p in range(1, a.passes + 1):
        order = list(rec.g.cells)
        rng.shuffle(order)
        for i, params in enumerate(order):
            if len(_quiet_runs(by_cell[key_of(params)], a.quiet)) < p:  # not yet (quietly)
                if time.perf_counter() > deadline:
                    print(f"--max-minutes {a.max_minutes:g} reached during pass {p}", flush=True)
                    return True
                rec.run_cell(params, f"pass{p}", i)
    return False


def _retries(rec: _Recorder, rng: random.Random, deadline: float) -> None:
    """Cells measured only while other work was running: measure again while time is left."""
    a, by_cell = rec.a, rec.by_cell
    for r in range(1, a.retries + 1):
        noisy = [c for c in rec.g.cells if not _quiet_runs(by_cell[key_of(c)], a.quiet)]
        rng.shuffle(noisy)
        print(f"retry round {r}: {len(noisy)} cell(s) without a quiet run", flush=True)
        for i, params in enumerate(noisy):
            if time.perf_counter() > deadline:
                break
            rec.run_cell(params, f"retry{r}", i)


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    try:
        fixed = parse_fixed(a.fixed)
    except ValueError as e:
        ap.error(str(e))
    _machine_defaults(a)
    if a.nice:
        os.nice(a.nice)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    t_start = time.perf_counter()
    name = a.name or ("gpu_grid" if a.gpu else "cpu_grid")
    g = _load_grid(a, ap, fixed)
    launcher = ColdLauncher(sample_gpu=a.gpu)  # each run a fresh trial child
    _print_header(a, g)

    a.out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = a.out_dir / f"{name}_runs.csv"
    by_cell: dict[str, list[dict[str, Any]]] = {key_of(c): [] for c in g.cells}
    rng = random.Random(a.seed)
    limit_s = a.max_minutes * 60 if a.max_minutes is not None else math.inf
    pass_deadline = t_start + limit_s
    retry_deadline = t_start + (limit_s if a.max_minutes is not None else 15 * 60)
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    kept = _read_runs(runs_path, by_cell, g.settings) if a.resume and runs_path.exists() else 0
    if kept:
        print(f"resuming: {kept} earlier run(s) kept from {runs_path}", flush=True)
    meta = _meta(a, g, runs_path, started, argv)
    table_path, meta_path = a.out_dir / f"{name}.csv", a.out_dir / f"{name}.json"

    run_columns = ("pass", "order", *g.settings, *METRICS, *RUN_TAIL)
    if kept:  # append in the earlier file's columns (an older file has no vram columns)
        with runs_path.open(newline="", encoding="utf-8") as f:
            run_columns = tuple(next(csv.reader(f)))
    with runs_path.open("a" if kept else "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=run_columns, extrasaction="ignore")
        if not kept:
            w.writeheader()
        rec = _Recorder(a, g, launcher, by_cell, meta, table_path, meta_path, t_start, kept, w, f)
        if not _passes(rec, rng, pass_deadline):
            _retries(rec, rng, retry_deadline)

    meta["model"]["sha256"] = sha256_cached(g.info.path)  # last: minutes for a large model
    table = rec.write_outputs(complete=True)
    done = "" if meta["complete"] else f"; INCOMPLETE: {len(g.cells) - len(table)} cell(s) missing"
    print(f"wrote {table_path} ({len(table)} rows) in {meta['wall_s']} s{done}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
