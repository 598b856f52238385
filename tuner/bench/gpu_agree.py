"""Do two GPUs of one machine measure the same setting alike? (issue 14: `dm-tune run --gpus`)

A study run with one worker per GPU mixes trials measured on either GPU, so its ranking is only
sound if the GPUs (each with its share of the cores) measure a setting alike. Two subcommands,
around `scripts/anchors.py measure` (which does the measuring):

    python3 scripts/gpu_agree.py plan --storage URL [--study NAME] --top 3 --out plan.json
    # then, at the same time, one per GPU, each on its share of the cores (as the workers ran):
    CUDA_VISIBLE_DEVICES=0 taskset -c 0-15 python3 scripts/anchors.py measure --plan plan.json \\
        --model M --storage URL --runs 3 --out gpu0.json   # & the same for GPU 1, cores 16-31
    python3 scripts/gpu_agree.py compare --results gpu0.json --results gpu1.json --out agree.md

`plan` takes the study's top candidates (the order confirmation uses: the Pareto front by the
export rule, then the other feasible trials; one per distinct setting). `compare` puts the
medians side by side and reports the largest relative difference of gen tok/s and first-token
latency against the 5 % the issue asks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

from tuner.bench.anchors import PLAN_VERSION, load_results
from tuner.errors import UserError
from tuner.profile import Prefer
from tuner.yaml_io import write_atomic

AGREE_PCT = 5.0  # the issue's bound on the two GPUs' difference
METRICS = (("gen_tok_s", "gen tok/s"), ("ttft_ms", "cold TTFT ms"))


def plan_from_study(
    storage: str, study: str | None, top: int, model: Path | None
) -> dict[str, Any]:
    """An anchors plan (`anchors.py measure` reads it) of the study's `top` candidates."""
    from tuner.study import StudyRecord, TrialRecord, load_existing_study, top_candidates

    if top < 1:
        raise UserError("--top must be at least 1")
    s = load_existing_study(storage, study)
    picked = top_candidates(s.get_trials(deepcopy=False), Prefer.BALANCED, top)
    if not picked:
        raise UserError(f"study {s.study_name!r} has no feasible completed trial to measure")
    rec = StudyRecord.from_study(s)
    return {
        "version": PLAN_VERSION,
        "model": rec.model if model is None else {"path": str(model), "file": model.name},
        "study": s.study_name,
        "settings": [
            {
                "name": f"trial {t.number}",
                "group": "study",
                "llama": TrialRecord.from_frozen(t).settings,
                "note": f"{t.values[0]:.1f} tok/s, {t.values[1]:.0f} ms in the study",
                "below_floor": False,
            }
            for t in picked
        ],
    }


class Row(NamedTuple):
    setting: str
    a: dict[str, float | None]  # metric -> median on the first GPU
    b: dict[str, float | None]
    diff_pct: dict[str, float | None]  # |a - b| / mean(a, b), in %


def _median(summary: dict[str, Any], setting: str, metric: str) -> float | None:
    st = summary.get(setting, {}).get(metric) or {}
    v = st.get("median")
    return None if v is None else float(v)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[Row]:
    """One row per setting both results measured (by name), in the first results' plan order."""
    names = [s["name"] for s in a["plan"]["settings"]]
    if names != [s["name"] for s in b["plan"]["settings"]]:
        raise UserError("the two results measured different plans; give results of one plan")
    rows = []
    for n in names:
        va = {m: _median(a["summary"], n, m) for m, _ in METRICS}
        vb = {m: _median(b["summary"], n, m) for m, _ in METRICS}
        diff: dict[str, float | None] = {}
        for m, _ in METRICS:
            x, y = va[m], vb[m]
            ok = x is not None and y is not None and x + y > 0
            diff[m] = abs(x - y) / ((x + y) / 2) * 100 if ok else None  # type: ignore[operator]
        rows.append(Row(n, va, vb, diff))
    return rows


def _f(v: float | None, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def render(rows: list[Row], label_a: str, label_b: str) -> str:
    head = " | ".join(f"{lbl} {label_a} | {lbl} {label_b} | diff" for _, lbl in METRICS)
    out = [f"| setting | {head} |", "|---" * (1 + 3 * len(METRICS)) + "|"]
    for r in rows:
        cells = " | ".join(
            f"{_f(r.a[m], '{:.1f}')} | {_f(r.b[m], '{:.1f}')} | {_f(r.diff_pct[m], '{:.1f} %')}"
            for m, _ in METRICS
        )
        out.append(f"| {r.setting} | {cells} |")
    out.append("")
    for m, lbl in METRICS:
        diffs = [r.diff_pct[m] for r in rows if r.diff_pct[m] is not None]
        if not diffs:
            out.append(f"- {lbl}: no setting measured on both GPUs")
            continue
        worst = max(d for d in diffs if d is not None)
        verdict = "within" if worst <= AGREE_PCT else "NOT within"
        out.append(
            f"- {lbl}: largest difference {worst:.1f} % over {len(diffs)} settings "
            f"({verdict} {AGREE_PCT:g} %)"
        )
    return "\n".join(out) + "\n"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gpu_agree.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="the study's top candidates as an anchors plan")
    p.add_argument("--storage", required=True)
    p.add_argument("--study")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--model", type=Path, help="the GGUF to record in the plan")
    p.add_argument("--out", type=Path, required=True)
    c = sub.add_parser("compare", help="the two GPUs' medians side by side")
    c.add_argument("--results", type=Path, action="append", required=True)
    c.add_argument("--labels", default="GPU 0,GPU 1")
    c.add_argument("--out", type=Path, required=True)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.cmd == "plan":
            plan = plan_from_study(a.storage, a.study, a.top, a.model)
            write_atomic(a.out, json.dumps(plan, indent=1) + "\n")
            print(f"{len(plan['settings'])} settings -> {a.out}")
            return 0
        if len(a.results) != 2:
            raise UserError("give --results twice: one file per GPU")
        labels = a.labels.split(",")
        if len(labels) != 2:
            raise UserError("--labels takes two names separated by a comma")
        text = render(compare(*(load_results(f) for f in a.results)), *labels)
        write_atomic(a.out, text)
        print(text, end="")
        return 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
