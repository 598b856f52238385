"""One row per trial and per confirmation run: the `dm-tune trials` list and the report's
tables. Plain values (no optuna objects), so any format can be written from them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import optuna
from optuna.trial import FrozenTrial

from tuner.study import (
    StudyRecord,
    TrialRecord,
    metrics_of,
    role_of,
    settings_of,
    status_of,
    vram_predicted_mb,
)

# Always listed (None where a study did not search or set them), then any other knob present.
BASE_KNOBS = (
    "n_gpu_layers",
    "n_ctx",
    "n_batch",
    "n_ubatch",
    "n_threads",
    "flash_attn",
    "use_mlock",
)
HEAD_COLUMNS = ("number", "role", "name", "state", "status", "session", "reason")
FIGURE_COLUMNS = (
    "tok_s",
    "cold_ttft_ms",
    "warm_ttft_ms",
    "vram_mb",
    "vram_predicted_mb",
    "vram_source",
)


class TrialRow(NamedTuple):
    number: int  # the trial; for a confirmation run, the trial it re-measured
    role: str  # baseline, start, sampled, confirmation
    name: str  # the app profile's or start point's name, "" for sampled trials
    state: str  # Optuna's state (complete, pruned, fail, running); a confirmation: ok/failed
    status: str  # dm-tune's status (ok, pruned, over_budget_predicted, reused, oom...)
    session: int | None  # a confirmation run's session (tuner/study/_confirm.py); None for trials
    reason: str
    settings: dict[str, Any]
    tok_s: float | None
    cold_ttft_ms: float | None
    warm_ttft_ms: float | None
    vram_mb: float | None
    vram_predicted_mb: float | None
    vram_source: str | None


def _num(v: Any) -> float | None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return float(v) if ok else None


def _figures(m: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "tok_s": _num(m.get("gen_tok_s")),
        "cold_ttft_ms": _num(m.get("ttft_ms")),
        "warm_ttft_ms": _num(m.get("warm_ttft_ms")),
        "vram_mb": _num(m.get("vram_mb")),
        "vram_source": m.get("vram_source"),
    }


def trial_row(t: FrozenTrial) -> TrialRow:
    role, name = role_of(t)
    return TrialRow(
        number=t.number,
        role=role,
        name=name,
        state=t.state.name.lower(),
        status=status_of(t),
        session=None,
        reason=TrialRecord.from_frozen(t).reason or "",
        settings=settings_of(t),
        vram_predicted_mb=vram_predicted_mb(t),
        **_figures(metrics_of(t)),
    )


def _confirmation_row(
    entry: Mapping[str, Any], trial: FrozenTrial | None, number: int, what: str
) -> TrialRow:
    status = str(entry.get("status", "failed"))
    session = entry.get("session")
    parts = [what]
    if entry.get("runs") is not None:
        parts.append(f"{entry['runs']} fresh processes")
    gap = _num(entry.get("tok_s_gap_pct"))
    if status == "ok" and gap is not None:
        parts.append(f"{gap:+.1f} % tok/s vs the study")
    _, name = role_of(trial) if trial is not None else ("", "")
    return TrialRow(
        number=number,
        role="confirmation",
        name=name,
        state=status,
        status=status,
        session=int(session) if isinstance(session, int) else None,
        reason=", ".join(parts),
        settings=settings_of(trial) if trial is not None else {},
        vram_predicted_mb=vram_predicted_mb(trial) if trial is not None else None,
        **_figures(entry.get("metrics") or {}),
    )


def confirmed_rows(trials: Sequence[FrozenTrial], record: StudyRecord) -> list[TrialRow]:
    """One row per candidate re-measured before export (study attribute `confirmed`)."""
    by_number = {t.number: t for t in trials}
    confirmed = record.confirmed
    return [
        _confirmation_row(confirmed[k], by_number.get(int(k)), int(k), "confirmed")
        for k in sorted(confirmed, key=int)
    ]


def reference_rows(trials: Sequence[FrozenTrial], record: StudyRecord) -> list[TrialRow]:
    """One row per confirmation session's side-by-side run of the app's own profile
    (study attribute `reference_runs`)."""
    by_number = {t.number: t for t in trials}
    refs = record.reference_runs
    rows = []
    for k in sorted(refs, key=int):
        n = int(refs[k].get("trial", -1))
        rows.append(
            _confirmation_row(refs[k], by_number.get(n), n, "the app's profile, side by side")
        )
    return rows


def confirmation_rows(trials: Sequence[FrozenTrial], record: StudyRecord) -> list[TrialRow]:
    """Every confirmation run (tuner/study/_confirm.py): the candidates', then the app profile's."""
    return confirmed_rows(trials, record) + reference_rows(trials, record)


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """Every trial, in number order, then every confirmation run."""
    trials = study.get_trials(deepcopy=False)
    return [trial_row(t) for t in trials] + confirmation_rows(trials, StudyRecord.from_study(study))


def knob_columns(rows: Sequence[TrialRow]) -> list[str]:
    """The settings columns: BASE_KNOBS, then every other knob some row has (sorted)."""
    extra = sorted({k for r in rows for k in r.settings} - set(BASE_KNOBS))
    return [*BASE_KNOBS, *extra]


def record_columns(rows: Sequence[TrialRow]) -> list[str]:
    """The keys of every record, in order."""
    return [*HEAD_COLUMNS, *knob_columns(rows), *FIGURE_COLUMNS]


def as_records(rows: Sequence[TrialRow]) -> list[dict[str, Any]]:
    """Flat records (one dict per row, record_columns' keys in that order for every row)."""
    knobs = knob_columns(rows)
    out = []
    for r in rows:
        rec: dict[str, Any] = {c: getattr(r, c) for c in HEAD_COLUMNS}
        rec.update({k: r.settings.get(k) for k in knobs})
        rec.update({c: getattr(r, c) for c in FIGURE_COLUMNS})
        out.append(rec)
    return out
