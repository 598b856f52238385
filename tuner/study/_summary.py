"""Tables for people: the end-of-run summary (best vs first/baseline trial) and trial lists."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from tuner.profile import Prefer
from tuner.space import ContextFloor
from tuner.study._constraints import CONSTRAINT_KEY, CTX_CONSTRAINT_KEY
from tuner.study._selection import choose_best, pareto_front
from tuner.study._spill import mark_spills, spilled
from tuner.study._trial_record import TrialRecord

COLUMNS = ("trial", "role", "ngl", "n_ctx", "batch", "thr", "mlock", "tok/s", "TTFT ms", "VRAM MB")


@dataclass(frozen=True)
class Row:
    trial: int
    role: str
    settings: dict[str, Any]
    tok_s: float | None
    ttft_ms: float | None
    vram_mb: float | None
    status: str

    def cells(self) -> list[str]:
        p = self.settings

        def num(v: float | None, fmt: str) -> str:
            return "-" if v is None else format(v, fmt)

        return [
            f"#{self.trial}",
            self.role,
            str(p.get("n_gpu_layers", "-")),
            str(p.get("n_ctx", "-")),
            str(p.get("n_batch", "-")),
            str(p.get("n_threads", "-")),
            {True: "on", False: "off"}.get(p.get("use_mlock"), "-"),  # type: ignore[arg-type]
            num(self.tok_s, ".1f"),
            num(self.ttft_ms, ".0f"),
            num(self.vram_mb, ".0f"),
        ]


def row_of(t: FrozenTrial, role: str) -> Row:
    values = t.values if t.state == TrialState.COMPLETE and t.values else [None, None]
    r = TrialRecord.from_frozen(t)
    return Row(
        trial=t.number,
        role=role,
        settings=r.settings,
        tok_s=values[0],
        ttft_ms=values[1],
        vram_mb=r.metrics.get("vram_mb"),
        status=r.outcome,
    )


def summary_rows(trials: Sequence[FrozenTrial], prefer: Prefer) -> list[Row]:
    """Best (by `prefer`), then the 'performance' baseline (or the first trial) for comparison."""
    rows: list[Row] = []
    best = choose_best(trials, prefer)
    if best is not None:
        rows.append(row_of(best, f"best ({prefer})"))
    ref = next((t for t in trials if TrialRecord.from_frozen(t).baseline == "performance"), None)
    ref = ref or (trials[0] if trials else None)
    if ref is not None and (best is None or ref.number != best.number):
        role = TrialRecord.from_frozen(ref).baseline or "first trial"
        rows.append(row_of(ref, role if ref.state == TrialState.COMPLETE else f"{role} (failed)"))
    return rows


def render_table(rows: Sequence[Row]) -> str:
    table = [list(COLUMNS)] + [r.cells() for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def floor_cost(trials: Sequence[FrozenTrial]) -> dict[str, Any] | None:
    """What the context floor cost: the best tok/s at the floor (feasible trials) vs the best
    measured below it (the app's own profiles below the floor, within the VRAM budget); None
    when nothing below the floor was measured. The profile's `conversation.floor_cost`."""
    done = [t for t in mark_spills(trials) if t.state == TrialState.COMPLETE and t.values]
    below = [
        t
        for t in done
        if t.constraints.get(CTX_CONSTRAINT_KEY, 0.0) > 0
        and t.constraints.get(CONSTRAINT_KEY, 0.0) <= 0
    ]
    at = [t for t in done if all(v <= 0 for v in t.constraints.values())]
    if not below or not at:
        return None
    b = max(below, key=lambda t: t.values[0])
    a = max(at, key=lambda t: t.values[0])
    below_r = TrialRecord.from_frozen(b)
    return {
        "best_at_floor": {"trial": a.number, "gen_tok_s": round(float(a.values[0]), 2)},
        "best_below_floor": {
            "trial": b.number,
            "gen_tok_s": round(float(b.values[0]), 2),
            "n_ctx": int((below_r.llama_kwargs or {}).get("n_ctx", 0)),
            "history_turns": below_r.metrics.get("history_turns"),
        },
    }


def floor_lines(trials: Sequence[FrozenTrial], floor: ContextFloor) -> list[str]:
    """The context floor, its token counts, and what it cost (floor_cost)."""
    lines = [
        f"Context floor: n_ctx >= {floor.min_ctx} ({floor.min_ctx_rule}). The app's "
        f"steady-state turn ({floor.turns_kept} interaction(s) + a {floor.max_tokens}-token reply) "
        f"needs {floor.steady_state_tokens} tokens; with every reply at {floor.max_tokens} "
        f"tokens, {floor.worst_case_tokens}."
    ]
    cost = floor_cost(trials)
    if cost is not None:
        a, b = cost["best_at_floor"], cost["best_below_floor"]
        lines.append(
            f"What the floor cost: best {a['gen_tok_s']:.1f} tok/s at the floor (#{a['trial']}) "
            f"vs {b['gen_tok_s']:.1f} tok/s below it (#{b['trial']}, n_ctx {b['n_ctx']}, "
            f"measured with {b['history_turns']} of {floor.turns_kept} interactions: it would "
            "overflow in the app)."
        )
    return lines


def render_summary(
    trials: Sequence[FrozenTrial], prefer: Prefer, floor: ContextFloor | None = None
) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        st = TrialRecord.from_frozen(t).outcome
        counts[st] = counts.get(st, 0) + 1
    head = f"{len(trials)} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    rows = summary_rows(trials, prefer)
    if not rows:
        return head + "\nNo trial finished."
    out = [head, render_table(rows)]
    if floor is not None:
        out.extend(floor_lines(trials, floor))
    best, ref = rows[0], rows[1] if len(rows) > 1 else None
    if ref is not None and best.tok_s and ref.tok_s and best.ttft_ms and ref.ttft_ms:
        out.append(
            f"Best vs {ref.role}: {best.tok_s / ref.tok_s:.2f}x tok/s, "
            f"{best.ttft_ms / ref.ttft_ms:.2f}x first-token latency."
        )
    for t in spilled(trials):
        out.append(f"#{t.number} is over the VRAM budget: {TrialRecord.from_frozen(t).spill}")
    front = pareto_front(trials)
    if front:
        pts = ", ".join(
            f"#{t.number} ({t.values[0]:.1f} tok/s, {t.values[1]:.0f} ms)" for t in front
        )
        out.append(f"Pareto front (feasible): {pts}")
    if best.role.startswith("best"):
        out.append(
            f"'Best' = the Pareto-front trial chosen by --prefer {prefer} (see docs/selection.md)."
        )
    else:
        out.append("No trial fits the VRAM budget.")
    return "\n".join(out)
