"""What another first-token pruning factor would have saved and lost on recorded studies.

Issue 11's target of 50 trials + export in 15 minutes is not met on the 13B-class model
(docs/benchmarks/fit.md): its trials stopped early cost a median 32 s each there (13b-free),
most of them stopped while their prompt was processed. The rule (tuner/study/_pruning.py)
stops a first answer that has gone longer than max(10 s, F x the best first-token latency among
the trials using no more VRAM) without its first token, F = 10. This replays it on a study's
recorded trials, in the order they ran, with other factors:

- saved: how much sooner the trials the study stopped that way would have stopped;
- newly stopped: measured trials whose first token came after the new limit (they would have
  stopped at it: their time after it is saved too), and whether one is on the study's Pareto
  front (the export would lose it).

An estimate from recorded figures, not a measured wall time: a trial's time before its first
answer (start-up, load, warm-up) is taken from its metrics, and a trial that would now stop
leaves the later trials' comparisons as they were.

    python3 scripts/replay_pruning.py --factors 10 5 3 --out table.md STUDY.db...
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from optuna.trial import FrozenTrial, TrialState

from tuner.errors import UserError
from tuner.study import TrialRecord, is_feasible, load_existing_study, pareto_front
from tuner.study._pruning import PROMPT_FACTOR, Point, comparable, prompt_limit_s
from tuner.yaml_io import write_atomic


class Replay(NamedTuple):
    study: str
    factor: float
    prompt_stopped: int  # trials the study stopped before their first token
    saved_s: float
    newly_stopped: tuple[int, ...]
    front_lost: tuple[int, ...]


def _start(t: FrozenTrial) -> datetime:
    return t.datetime_start or t.datetime_complete or datetime.min


def _before_answer_s(r: TrialRecord) -> float:
    """Seconds of a measured trial before its first answer: start-up, load and warm-up."""
    m = r.metrics or {}
    extra = m.get("extra") or {}
    parts = (m.get("load_s"), extra.get("startup_s"), extra.get("prewarm_s"))
    return sum(float(x) for x in parts if x is not None)


def replay(trials: Sequence[FrozenTrial], factor: float, study: str = "") -> Replay:
    """The rule with `factor` over `trials` (one study's, as recorded)."""
    front = {t.number for t in pareto_front(trials)}
    done: list[tuple[datetime, Point]] = []  # when each comparison point became known
    prompt, saved, newly = 0, 0.0, []
    for t in sorted(trials, key=_start):
        r = TrialRecord.from_frozen(t)
        m = r.metrics or {}
        seen = [p for when, p in done if when <= _start(t)]
        if r.status == "pruned" and r.watch and r.watch.get("ttft_s") is None:
            prompt += 1
            cmp = comparable(seen, r.watch.get("vram_mb"))
            if cmp:
                saved += max(0.0, float(r.watch["elapsed_s"]) - prompt_limit_s(cmp, factor)[0])
        elif r.status == "ok" and m.get("ttft_ms") is not None:
            cmp = comparable(seen, m.get("vram_mb"))
            limit = prompt_limit_s(cmp, factor)[0] if cmp else None
            if limit is not None and m["ttft_ms"] / 1000 > limit:
                newly.append(t.number)
                ran_s = t.duration.total_seconds() if t.duration else 0.0
                saved += max(0.0, ran_s - _before_answer_s(r) - limit)
        if r.status == "ok" and t.state == TrialState.COMPLETE and is_feasible(t):
            point = Point(t.number, m.get("vram_mb"), m["gen_tok_s"], m["ttft_ms"])
            done.append((t.datetime_complete or _start(t), point))
    lost = tuple(n for n in newly if n in front)
    return Replay(study, factor, prompt, saved, tuple(newly), lost)


def markdown(rows: Sequence[Replay]) -> str:
    head = (
        "| study | factor | stopped before the first token | seconds saved (estimate) "
        "| measured trials it would stop | of them on the Pareto front |\n"
        "|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.study} | {r.factor:g}{' (now)' if r.factor == PROMPT_FACTOR else ''} "
        f"| {r.prompt_stopped} | {r.saved_s:.0f} "
        f"| {', '.join(f'#{n}' for n in r.newly_stopped) or '-'} "
        f"| {', '.join(f'#{n}' for n in r.front_lost) or 'none'} |\n"
        for r in rows
    )
    return head + body


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("databases", nargs="+", type=Path, help="recorded study files (SQLite)")
    p.add_argument("--factors", nargs="+", type=float, default=[PROMPT_FACTOR, 5.0, 3.0])
    p.add_argument("--out", type=Path, help="also write the table to this Markdown file")
    return p


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        rows = []
        for db in a.databases:  # a missing or foreign file: load_existing_study says so
            s = load_existing_study(f"sqlite:///{db}", None)
            trials = s.get_trials(deepcopy=False)
            rows += [replay(trials, f, s.study_name) for f in a.factors]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown(rows)
    print(table, end="")
    if a.out:
        write_atomic(a.out, table)
    return 0
