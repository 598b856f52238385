"""Stop a trial early when it is already clearly worse than settings the study has measured.

A model load plus three answers costs seconds on a GPU but minutes when most layers run on a
slow CPU path. Once a trial's first answer shows it is dominated, the rest can't change that:

- while the prompt is processed (no first token yet): it has taken longer than
  max(10 s, 10 x the best first-token latency) of trials using no more VRAM;
- after 8 generated tokens: some trial using no more VRAM was at least 1.5x faster at
  generation AND had a first token at least as early.

"Using no more VRAM" (with 10 % + 256 MB of slack for a peak still growing) keeps a slow but
small setting alive when nothing smaller has been measured: the profile's low-VRAM tiers need
it. Pruned trials are stored as PRUNED with the reason and what was seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from objectives.launch import Watch, Watcher
from objectives.measure import MIN_TOKENS  # a capped answer has at least these
from tuner.study._selection import is_feasible
from tuner.study._trial_record import TrialRecord

MIN_POINTS = 3  # don't prune before the study has this many feasible measurements
PROMPT_FACTOR = 10.0
PROMPT_FLOOR_S = 10.0
GEN_FACTOR = 1.5
# a trial's peak may still grow: 'using no more VRAM' is within this factor plus this many MB
VRAM_SLACK_FACTOR = 1.1
VRAM_SLACK_MB = 256.0


@dataclass(frozen=True)
class Point:
    trial: int
    vram_mb: float | None
    gen_tok_s: float
    ttft_ms: float  # cold first-token latency: what the watched first answer shows


def points(study: optuna.Study) -> list[Point]:
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        r = TrialRecord.from_frozen(t)
        m = r.metrics
        if m and is_feasible(t) and r.status == "ok":
            out.append(Point(t.number, m.get("vram_mb"), m["gen_tok_s"], m["ttft_ms"]))
    return out


def _fits(p: Point, vram: float | None) -> bool:
    if vram is None or p.vram_mb is None:
        return True
    return p.vram_mb <= vram * VRAM_SLACK_FACTOR + VRAM_SLACK_MB


def comparable(pts: list[Point], vram_mb: float | None) -> list[Point]:
    """The points a trial peaking at `vram_mb` so far is judged against (none before the study
    has MIN_POINTS)."""
    return [p for p in pts if _fits(p, vram_mb)] if len(pts) >= MIN_POINTS else []


def prompt_limit_s(cmp: list[Point], factor: float = PROMPT_FACTOR) -> tuple[float, Point]:
    """How long a first answer may go without its first token, and the point that sets it."""
    best = min(cmp, key=lambda p: p.ttft_ms)
    return max(PROMPT_FLOOR_S, factor * best.ttft_ms / 1000), best


def decide(w: Watch, pts: list[Point]) -> str | None:
    """The reason to stop this trial now, or None to let it run."""
    cmp = comparable(pts, w.vram_mb)
    if not cmp:
        return None
    if w.ttft_s is None:
        limit, best = prompt_limit_s(cmp)
        if w.elapsed_s > limit:
            return (
                f"no first token after {w.elapsed_s:.0f} s; trial {best.trial} "
                f"answered in {best.ttft_ms:.0f} ms with no more VRAM"
            )
        return None
    rate = w.gen_tok_s
    if rate is None or w.tokens < MIN_TOKENS:
        return None
    ttft_ms = w.ttft_s * 1000
    for p in sorted(cmp, key=lambda p: -p.gen_tok_s):
        if p.gen_tok_s >= GEN_FACTOR * rate and p.ttft_ms <= ttft_ms:
            return (
                f"{rate:.1f} tok/s and {ttft_ms:.0f} ms first token after {w.tokens} "
                f"tokens; trial {p.trial} did {p.gen_tok_s:.1f} tok/s, {p.ttft_ms:.0f} ms "
                "with no more VRAM"
            )
    return None


def make_watcher(study: optuna.Study) -> Watcher:
    pts = points(study)  # read once per trial: the study doesn't change while it runs

    def watch(w: Watch) -> str | None:
        return decide(w, pts)

    return watch
