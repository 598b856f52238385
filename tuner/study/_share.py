"""Several workers on one study: which trials count toward `--trials`, and whether a trial that
starts is one too many (`surplus`) or a second run of an enqueued trial (`duplicate`).

Each worker decides for the trial it starts, from the storage alone: a trial's rank is the
number of counting trials with a smaller number. Optuna's storage gives trial numbers
atomically (one insert per trial, numbered in the database's transaction), so no two trials
share a number and every worker sees the same order: at most `total` trials have a rank below
`total`, whichever worker runs them, and the study never overshoots."""

from __future__ import annotations

from optuna.trial import FrozenTrial, TrialState

from tuner.study._trial_record import DUPLICATE, SURPLUS, TrialRecord

Identity = tuple[str, object]


def _identity(r: TrialRecord) -> Identity | None:
    """What a trial must be the only one of: an enqueued profile or start point, or the retry
    of a sampled trial (a retry of an enqueued one carries its name)."""
    kind, name = r.role
    if kind != "sampled":
        return kind, name
    return None if r.retry_of is None else ("retry", r.retry_of)


def _replaced(records: list[TrialRecord]) -> set[int | None]:
    """Trials run again by a later one (interrupted, or failed by the heartbeat)."""
    return {r.retry_of for r in records} | {r.failed_trial for r in records}


def classify(trials: list[FrozenTrial]) -> dict[int, str]:
    """Trial number -> `counted`, `running` (counts while it runs), `duplicate`, `surplus`
    or `other` (interrupted, retried, waiting), walking the trials in number order."""
    records = sorted((TrialRecord.from_frozen(t) for t in trials), key=lambda r: r.number)
    replaced = _replaced(records)
    carried: set[Identity] = set()
    out: dict[int, str] = {}
    for r in records:
        ident = _identity(r)
        if r.status in (SURPLUS, DUPLICATE):
            out[r.number] = r.status
        elif r.state == TrialState.WAITING:
            out[r.number] = "other"
        elif ident is not None and ident in carried:
            out[r.number] = DUPLICATE
        elif r.status == "interrupted" or r.number in replaced:
            out[r.number] = "other"
        else:
            out[r.number] = "running" if r.state == TrialState.RUNNING else "counted"
        if ident is not None and out[r.number] in ("counted", "running"):
            carried.add(ident)
    return out


def counted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials that count toward --trials (interrupted, retried, surplus or duplicate
    ones don't)."""
    kinds = classify(trials)
    return [t for t in trials if t.state.is_finished() and kinds.get(t.number) == "counted"]


def unneeded(trials: list[FrozenTrial], number: int, total: int) -> str | None:
    """`duplicate` or `surplus` when the trial `number`, starting now, must not be measured."""
    kinds = classify(trials)
    if kinds.get(number) == DUPLICATE:
        return DUPLICATE
    rank = sum(1 for n, k in kinds.items() if n < number and k in ("counted", "running"))
    return SURPLUS if rank >= total else None
