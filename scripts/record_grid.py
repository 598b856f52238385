"""Measure every CPU setting of the search space once, for the offline sampler benchmark.

Each cell of the grid (n_threads x n_batch x usable n_ctx x use_mlock, n_gpu_layers 0) runs in
a fresh trial child through objectives.runner.run_child, exactly as a study trial does, with the
default workload but repeats=1 (one measured answer per run, to keep the whole grid affordable).
Each pass measures the grid in its own shuffled order, so slow spells from other load on the
machine do not line up with one setting.

The machine may be shared: before each run the script waits (up to --max-wait s) for a second in
which other processes use fewer than --quiet cores, and records how many cores they used during
the run (`others_cores`: all CPU time of the machine minus this process and its children, per
second of the run). Cells that got no quiet run are measured again (--retries rounds) while the
--max-minutes budget lasts; a cell's row is the median of its quiet runs, or of all its runs when
none was quiet (`quiet_runs` = 0 says so).

    python scripts/record_grid.py                  # writes docs/benchmarks/data/cpu_grid.*
    python scripts/record_grid.py --limit 4 --out-dir /tmp/grid   # quick look

Outputs: cpu_grid.csv (one row per cell), cpu_grid_runs.csv (every run, with its pass, order,
others_cores and load average), cpu_grid.json (machine, versions, workload digest, timing, CVs).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import itertools
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from objectives.runner import ChildResult, run_child  # noqa: E402
from objectives.workload import Workload  # noqa: E402
from tuner.demo_model import ensure_demo_model  # noqa: E402
from tuner.gguf_info import read_gguf  # noqa: E402
from tuner.hardware import detect  # noqa: E402
from tuner.model_file import sha256_cached  # noqa: E402
from tuner.probe import run_probe  # noqa: E402
from tuner.search_space import (  # noqa: E402
    Machine,
    SearchSpace,
    key_of,
    load_search_space_config,
    resolve,
)
from tuner.yaml_io import load_model  # noqa: E402

SETTINGS = ("n_threads", "n_batch", "n_ctx", "use_mlock", "n_gpu_layers")
METRICS = ("gen_tok_s", "ttft_ms", "warm_ttft_ms", "prompt_tok_s", "load_s", "peak_rss_mb")
COLUMNS = (*SETTINGS, *METRICS, "status", "runs", "quiet_runs", "others_cores")
RUN_COLUMNS = (
    "pass",
    "order",
    *SETTINGS,
    *METRICS,
    "status",
    "others_cores",
    "wall_s",
    "waited_s",
    "loadavg_1m",
    "reason",
)


def digest(obj: Any) -> str:
    """Same digest as tuner.prepare (a study's settings.workload_digest)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def grid(space: SearchSpace) -> list[dict[str, Any]]:
    """Every CPU setting SearchSpace.suggest can return on this machine, normalized."""
    c, m = space.config, space.machine
    lo, hi = space._bounds(c.n_threads, m.logical_cores)
    mlock = (False, True) if c.use_mlock.enabled else (None,)
    cells = []
    for threads, batch, ctx, lock in itertools.product(
        range(lo, hi + 1), c.n_batch.choices, space.n_ctx_choices, mlock
    ):
        p: dict[str, Any] = {"n_threads": threads, "n_batch": batch, "n_ctx": ctx}
        if lock is not None:
            p["use_mlock"] = lock
        p["n_gpu_layers"] = 0
        cells.append(space.normalize(p))
    return cells


def row_of(params: dict[str, Any], res: ChildResult) -> dict[str, Any]:
    row: dict[str, Any] = {k: params.get(k, "") for k in SETTINGS}
    m = res.metrics.to_dict() if res.metrics is not None else {}
    for k in METRICS:
        v = m.get(k)
        row[k] = round(float(v), 4) if v is not None else ""
    row["status"] = res.status if res.metrics is not None or res.status != "ok" else "failed"
    return row


def _quiet_runs(runs: list[dict[str, Any]], quiet: float) -> list[dict[str, Any]]:
    return [r for r in runs if r["status"] == "ok" and r["others_cores"] <= quiet]


def median_row(runs: list[dict[str, Any]], quiet: float) -> dict[str, Any]:
    """Median over the quiet runs of a cell, or over all its runs when none was quiet."""
    ok = _quiet_runs(runs, quiet) or [r for r in runs if r["status"] == "ok"]
    row = {k: runs[0][k] for k in SETTINGS}
    for k in METRICS:
        vals = [float(r[k]) for r in ok if r[k] != ""]
        row[k] = round(statistics.median(vals), 4) if vals else ""
    row["status"] = "ok" if ok else runs[-1]["status"]
    row["runs"] = len(ok)
    row["quiet_runs"] = len(_quiet_runs(runs, quiet))
    row["others_cores"] = round(statistics.median(r["others_cores"] for r in ok), 2) if ok else ""
    return row


def _read_runs(path: Path, by_cell: dict[str, list[dict[str, Any]]]) -> int:
    """Runs an earlier invocation wrote, added to `by_cell`; returns how many."""
    n = 0
    with path.open(newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            params: dict[str, Any] = {k: int(r[k]) for k in SETTINGS if k != "use_mlock"}
            if r["use_mlock"] != "":
                params["use_mlock"] = r["use_mlock"] == "True"
            key = key_of(params)
            if key in by_cell:
                row: dict[str, Any] = {k: params.get(k, "") for k in SETTINGS}
                row.update({k: r[k] for k in (*METRICS, "status")})
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
    """Wait (up to max_wait s) for a second in which other processes use < threshold cores."""
    t0 = time.perf_counter()
    while True:
        b0, o0, s0 = _busy_s(), _own_s(), time.perf_counter()
        time.sleep(1.0)
        others = ((_busy_s() - b0) - (_own_s() - o0)) / (time.perf_counter() - s0)
        if others < threshold or time.perf_counter() - t0 >= max_wait:
            return time.perf_counter() - t0


def measure(spec: dict[str, Any], timeout: float) -> tuple[ChildResult, float]:
    """One trial child, and the cores other processes used on average meanwhile."""
    b0, o0 = _busy_s(), _own_s()
    res = run_child(spec, timeout, sample_gpu=False)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="GGUF (default: the demo model)")
    ap.add_argument("--workload", type=Path, default=ROOT / "configs" / "workload.yaml")
    ap.add_argument("--search-space", type=Path, default=ROOT / "configs" / "search_space.yaml")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "benchmarks" / "data")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="measured answers per run")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per trial child")
    ap.add_argument("--limit", type=int, default=None, help="measure only the first N cells")
    ap.add_argument("--seed", type=int, default=0, help="seed of the per-pass shuffles")
    ap.add_argument(
        "--quiet",
        type=float,
        default=0.25,
        help="a run is quiet when other processes used fewer cores than this meanwhile",
    )
    ap.add_argument("--max-wait", type=float, default=3.0, help="s to wait for quiet per run")
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="add this to the scheduling niceness of this process and its trial children "
        "(negative, as root: take CPU time from other work on a shared machine)",
    )
    ap.add_argument(
        "--resume", action="store_true", help="keep the runs already in cpu_grid_runs.csv"
    )
    ap.add_argument("--retries", type=int, default=2, help="re-measure rounds for noisy cells")
    ap.add_argument(
        "--max-minutes", type=float, default=15.0, help="no re-measuring after this long"
    )
    a = ap.parse_args(argv)

    if a.nice:
        os.nice(a.nice)
    model = a.model or ensure_demo_model()
    info = read_gguf(model)
    workload = load_model(a.workload, Workload)
    spec_w = workload.spec(repeats=a.repeats)
    texts = [workload.prompt()] + ([workload.next_prompt() or ""] if workload.next_turn else [])
    probe = run_probe(info.path, texts, smoke=False)
    hw = detect()
    machine = Machine(
        logical_cores=hw.logical_cores,
        layers=info.offloadable_layers,
        gpu_offload=False,
        min_ctx=max(probe.n_tokens) + workload.max_tokens,
        trained_ctx=info.context_length,
    )
    space = resolve(load_search_space_config(a.search_space), machine)
    cells = grid(space)[: a.limit]
    print(
        f"{hw.cpu}, {hw.logical_cores} logical cores; llama-cpp-python {probe.llama_cpp_version}; "
        f"prompt {max(probe.n_tokens)} tokens, n_ctx {list(space.n_ctx_choices)}; "
        f"{len(cells)} cells x {a.passes} pass(es), repeats={a.repeats}",
        flush=True,
    )

    a.out_dir.mkdir(parents=True, exist_ok=True)
    runs_path = a.out_dir / "cpu_grid_runs.csv"
    by_cell: dict[str, list[dict[str, Any]]] = {key_of(c): [] for c in cells}
    rng = random.Random(a.seed)
    t_start = time.perf_counter()
    deadline = t_start + a.max_minutes * 60
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    n = 0
    kept = _read_runs(runs_path, by_cell) if a.resume and runs_path.exists() else 0
    if kept:
        print(f"resuming: {kept} earlier run(s) kept from {runs_path}", flush=True)
    with runs_path.open("a" if kept else "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=RUN_COLUMNS)
        if not kept:
            w.writeheader()

        def run_cell(params: dict[str, Any], label: str, order: int) -> None:
            nonlocal n
            waited = wait_quiet(a.quiet, a.max_wait)
            spec = {"model_path": str(info.path), "params": params, "workload": spec_w}
            res, others = measure(spec, a.timeout)
            row = row_of(params, res)
            row["others_cores"] = round(others, 2)
            by_cell[key_of(params)].append(row)
            w.writerow(
                {
                    "pass": label,
                    "order": order,
                    **row,
                    "wall_s": round(res.wall_s, 2),
                    "waited_s": round(waited, 1),
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                    "reason": res.reason,
                }
            )
            f.flush()
            n += 1
            print(
                f"[{n}] {label} {key_of(params)}: {row['status']} {row['gen_tok_s']} tok/s, "
                f"ttft {row['ttft_ms']} ms ({res.wall_s:.1f} s, waited {waited:.0f} s, others "
                f"{others:.2f} cores; elapsed {time.perf_counter() - t_start:.0f} s)",
                flush=True,
            )

        for p in range(1, a.passes + 1):
            order = list(cells)
            rng.shuffle(order)
            for i, params in enumerate(order):
                if len(_quiet_runs(by_cell[key_of(params)], a.quiet)) < p:  # not yet (quietly)
                    run_cell(params, f"pass{p}", i)
        # Cells measured only while other work was running: measure again while time is left.
        for r in range(1, a.retries + 1):
            noisy = [c for c in cells if not _quiet_runs(by_cell[key_of(c)], a.quiet)]
            rng.shuffle(noisy)
            print(f"retry round {r}: {len(noisy)} cell(s) without a quiet run", flush=True)
            for i, params in enumerate(noisy):
                if time.perf_counter() > deadline:
                    break
                run_cell(params, f"retry{r}", i)

    table = [median_row(by_cell[key_of(c)], a.quiet) for c in cells]
    with (a.out_dir / "cpu_grid.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    meta = {
        "version": 1,
        "what": "dm-tune CPU grid: one row per setting, medians over passes "
        "(every run in cpu_grid_runs.csv)",
        "started_utc": started,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": {
            "cpu": hw.cpu,
            "physical_cores": hw.physical_cores,
            "logical_cores": hw.logical_cores,
            "ram_mb": round(hw.ram_mb),
            "os": hw.os,
            "gpus": [g.name for g in hw.gpus],
            "note": "shared machine: other engineers ran tests at the same time",
        },
        "python": platform.python_version(),
        "llama_cpp_version": probe.llama_cpp_version,
        "system_info": probe.system_info,
        "model": {"file": info.path.name, "sha256": sha256_cached(info.path)},
        "workload": {
            "file": _rel(a.workload),
            "digest": digest(spec_w),
            "digest_default_repeats": digest(workload.spec()),
            "repeats": a.repeats,
            "prompt_tokens": max(probe.n_tokens),
            "max_tokens": workload.max_tokens,
        },
        "space": {
            "n_threads": [1, hw.logical_cores],
            "n_batch": list(space.config.n_batch.choices),
            "n_ctx": list(space.n_ctx_choices),
            "use_mlock": [False, True] if space.config.use_mlock.enabled else None,
            "n_gpu_layers": 0,
            "min_ctx": machine.min_ctx,
            "notices": list(space.notices),
        },
        "passes": a.passes,
        "retries": a.retries,
        "niceness": os.nice(0),
        "cells": len(cells),
        "quiet_threshold_cores": a.quiet,
        "runs_total": kept + n,
        "cells_with_quiet_run": sum(1 for r in table if r["quiet_runs"]),
        "between_runs_cv_all": cv_summary(by_cell, None),
        "between_runs_cv_quiet": cv_summary(by_cell, a.quiet),
        "command": "python scripts/record_grid.py " + " ".join(argv or sys.argv[1:]),
    }
    (a.out_dir / "cpu_grid.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {a.out_dir / 'cpu_grid.csv'} ({len(table)} rows) in {meta['wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
