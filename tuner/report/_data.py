"""The report's data, apart from the drawing (as Optuna's `_get_*_info`): small NamedTuples
computed from the study with dm-tune's own rules (selection, spill, confirmation, profile),
tested without plotly. Every section says what an older study lacks instead of failing."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from optuna.trial import FrozenTrial, TrialState

from tuner.errors import UserError
from tuner.profile import Prefer, Profile
from tuner.report._facts import StudyFacts, provenance, provenance_missing, study_facts
from tuner.report._rows import TrialRow, confirmation_rows, reference_rows
from tuner.study import (
    CONSTRAINT_KEY,
    CTX_CONSTRAINT_KEY,
    StudyRecord,
    TrialRecord,
    choose_best,
    is_feasible,
    mark_spills,
    metrics_of,
    pareto_front,
    partial_figures,
    role_of,
    settings_of,
    status_of,
    vram_predicted_mb,
)
from tuner.vram import free_vram_need_mb

FEASIBLE = "feasible"
OVER_BUDGET = "over the VRAM budget"
BELOW_FLOOR = "below the context floor"
SPILL = "spill suspected"
PRUNED = "pruned (first answer's figures)"
CATEGORIES = (FEASIBLE, OVER_BUDGET, BELOW_FLOOR, SPILL, PRUNED)
MIN_IMPORTANCE_TRIALS = 10  # PED-ANOVA compares the best 10 % with the rest


class TrialPoint(NamedTuple):
    """One measured trial on the trade-off plots (a pruned one at its partial figures)."""

    number: int
    label: str  # role and name, e.g. "baseline performance"
    category: str  # one of CATEGORIES
    tok_s: float
    latency_ms: float  # the study's latency objective (cold or warm)
    vram_mb: float | None
    n_gpu_layers: int | None
    n_ctx: int | None


class ProfileRow(NamedTuple):
    """One line of the before/after table: an app profile or an exported tier."""

    side: str  # "app" or "tuned"
    name: str
    trial: int | None
    source: str  # where the figures come from
    tok_s: float | None
    cold_ttft_ms: float | None
    warm_ttft_ms: float | None
    vram_mb: float | None
    need_mb: float | None  # the free VRAM its tier asks for (peak + margin)
    n_ctx: int | None
    note: str = ""


class HistoryPoint(NamedTuple):
    number: int
    tok_s: float
    feasible: bool
    best_so_far: float | None  # the best feasible tok/s up to this trial


class VramPair(NamedTuple):
    number: int
    predicted_mb: float
    measured_mb: float


class Importances(NamedTuple):
    values: dict[str, float]  # parameter -> importance (normalized), largest first
    n_trials: int  # feasible completed trials it was computed on
    note: str  # why it is empty, or ""


class Bandwidth(NamedTuple):
    """The best trial's share of the GPU's memory-bandwidth limit on generation: each token
    reads every weight once, so tok/s can't exceed bandwidth / weight bytes."""

    trial: int | None
    tok_s: float | None
    weight_bytes: int | None
    weight_source: str  # "GGUF tensors" or "model file size"
    bandwidth_gb_s: float | None
    limit_tok_s: float | None
    share: float | None  # tok_s / limit_tok_s
    note: str  # "n/a: ..." when there is no share


class FailureRow(NamedTuple):
    """A trial without figures: why, where the child was, what it printed last."""

    number: int
    label: str
    status: str
    reason: str
    phase: str
    returncode: str
    stderr_tail: str


class ReportData(NamedTuple):
    facts: StudyFacts
    prefer: Prefer
    profile_source: str  # "profile file PATH", "the study" or "" when no tiers
    before_after: list[ProfileRow]
    points: list[TrialPoint]
    unplotted: dict[str, int]  # status -> count of trials without figures
    reused: int  # trials that reused an earlier trial's figures (not plotted twice)
    pareto: list[int]
    chosen: int | None
    history: list[HistoryPoint]
    vram_pairs: list[VramPair]
    importances: Importances
    bandwidth: Bandwidth
    failures: list[FailureRow]
    confirmations: list[TrialRow]
    provenance: list[tuple[str, str]]
    missing: dict[str, list[str]]  # section -> what this study does not hold


def _category(t: FrozenTrial) -> str:
    if TrialRecord.from_frozen(t).spill is not None:
        return SPILL
    c = t.constraints
    if c.get(CONSTRAINT_KEY, 0.0) > 0:
        return OVER_BUDGET
    if c.get(CTX_CONSTRAINT_KEY, 0.0) > 0:
        return BELOW_FLOOR
    return FEASIBLE if is_feasible(t) else OVER_BUDGET


def _label(t: FrozenTrial) -> str:
    role, name = role_of(t)
    return f"{role} {name}".strip()


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _measured(t: FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and t.values is not None


def trial_points(trials: Sequence[FrozenTrial]) -> list[TrialPoint]:
    """Every trial with figures, once: completed ones (not those that reused an earlier
    trial's figures) by the study's constraints and the spill rule over all trials, and
    pruned ones at what their first answer showed."""
    out = []
    for t in mark_spills(trials):
        s = settings_of(t)
        vram = metrics_of(t).get("vram_mb")
        if _measured(t) and status_of(t) != "reused":
            cat, tps, lat = _category(t), float(t.values[0]), float(t.values[1])
        elif t.state == TrialState.PRUNED and (fig := partial_figures(t)) is not None:
            cat, (tps, lat), vram = PRUNED, fig, None
        else:
            continue
        out.append(
            TrialPoint(
                number=t.number,
                label=_label(t),
                category=cat,
                tok_s=tps,
                latency_ms=lat,
                vram_mb=float(vram) if vram is not None else None,
                n_gpu_layers=_int(s.get("n_gpu_layers")),
                n_ctx=_int(s.get("n_ctx")),
            )
        )
    return out


def unplotted(trials: Sequence[FrozenTrial], points: Sequence[TrialPoint]) -> dict[str, int]:
    """Trials without figures (skipped as predicted over budget, failed, OOM, running...)."""
    plotted = {p.number for p in points}
    counts: dict[str, int] = {}
    for t in trials:
        if t.number in plotted or (_measured(t) and status_of(t) == "reused"):
            continue
        counts[status_of(t)] = counts.get(status_of(t), 0) + 1
    return dict(sorted(counts.items()))


def failure_rows(trials: Sequence[FrozenTrial], points: Sequence[TrialPoint]) -> list[FailureRow]:
    plotted = {p.number for p in points}
    out = []
    for t in trials:
        if t.number in plotted or (_measured(t) and status_of(t) == "reused"):
            continue
        r = TrialRecord.from_frozen(t)
        out.append(
            FailureRow(
                t.number,
                _label(t),
                r.outcome,
                r.reason or "",
                r.phase or "",
                "" if r.returncode is None else str(r.returncode),
                r.stderr_tail or "",
            )
        )
    return out


def history(trials: Sequence[FrozenTrial]) -> list[HistoryPoint]:
    """Each completed trial's tok/s in order, and the best feasible tok/s so far."""
    best: float | None = None
    out = []
    for t in mark_spills(trials):
        if not _measured(t):
            continue
        tps, ok = float(t.values[0]), is_feasible(t)
        if ok:
            best = tps if best is None else max(best, tps)
        out.append(HistoryPoint(t.number, tps, ok, best))
    return out


def vram_pairs(trials: Sequence[FrozenTrial]) -> list[VramPair]:
    """Predicted (before loading) against measured peak VRAM, loaded trials only."""
    out = []
    for t in trials:
        pred, meas = vram_predicted_mb(t), metrics_of(t).get("vram_mb")
        if _measured(t) and status_of(t) != "reused" and pred is not None and meas is not None:
            out.append(VramPair(t.number, pred, float(meas)))
    return out


def importances(study: optuna.Study, tok_s_index: int) -> Importances:
    """PED-ANOVA importances of the parameters for tok/s, over the feasible completed trials
    (fANOVA would need scikit-learn). PED-ANOVA ranks low targets best: tok/s is negated."""
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    from tuner.study import candidates

    feasible = candidates(study.get_trials(deepcopy=False))
    n = len(feasible)
    if n < MIN_IMPORTANCE_TRIALS:
        return Importances(
            {}, n, f"needs {MIN_IMPORTANCE_TRIALS} feasible completed trials, has {n}"
        )
    sub = optuna.create_study(directions=study.directions)
    sub.add_trials(feasible)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = get_param_importances(
                sub,
                evaluator=PedAnovaImportanceEvaluator(),
                target=lambda t: -float(t.values[tok_s_index]),
            )
    except (RuntimeError, ValueError) as exc:  # e.g. no parameter shared by every trial
        return Importances({}, n, f"could not be computed: {exc}")
    if not values:
        return Importances({}, n, "no parameter varies across the feasible trials")
    return Importances(dict(values), n, "")


def _weight_bytes(facts: StudyFacts) -> tuple[int | None, str]:
    """Bytes of weights read per generated token: the GGUF's tensors where the file is here
    (the token-embedding table only when it is also the output matrix: otherwise one row is
    read), else the model file's size (a little more than the weights)."""
    if facts.model_path and Path(facts.model_path).is_file():
        from tuner.vram import read_gguf

        try:
            tensors = read_gguf(Path(facts.model_path)).tensors
        except UserError:
            tensors = ()
        if tensors:
            names = {t.name for t in tensors}
            skip = "token_embd.weight" if "output.weight" in names else ""
            return sum(t.n_bytes for t in tensors if t.name != skip), "GGUF tensors"
    return facts.model_bytes, "model file size"


def bandwidth(facts: StudyFacts, best: FrozenTrial | None, tok_s: float | None) -> Bandwidth:
    def na(note: str) -> Bandwidth:
        return Bandwidth(
            best.number if best else None, tok_s, None, "", facts.bandwidth_gb_s, None, None, note
        )

    if not facts.gpu_offload:
        return na("n/a: a CPU study (no GPU offload)")
    if best is None or tok_s is None:
        return na("n/a: no feasible trial")
    ngl = _int(settings_of(best).get("n_gpu_layers"))
    if ngl is None or facts.full_layers is None or (0 <= ngl < facts.full_layers):
        return na(f"n/a: the best trial #{best.number} is not at full offload (n_gpu_layers {ngl})")
    if facts.bandwidth_gb_s is None:
        return na("n/a: the GPU's memory bandwidth is not recorded in this study")
    weights, source = _weight_bytes(facts)
    if not weights:
        return na("n/a: the model's size is not recorded in this study")
    limit = facts.bandwidth_gb_s * 1e9 / weights
    return Bandwidth(
        best.number, tok_s, weights, source, facts.bandwidth_gb_s, limit, tok_s / limit, ""
    )


def _app_rows(trials: Sequence[FrozenTrial], record: StudyRecord) -> list[ProfileRow]:
    """The app's own profiles as the study measured them, then the side-by-side re-measurements
    of its performance profile (one per confirmation session)."""
    by_name: dict[str, FrozenTrial] = {}
    for t in trials:  # the completed measurement of each profile, else its first attempt
        role, name = role_of(t)
        kept = by_name.get(name)
        if role == "baseline" and (kept is None or (_measured(t) and not _measured(kept))):
            by_name[name] = t
    rows = []
    for name, t in by_name.items():
        m = metrics_of(t) if _measured(t) else {}
        vram = m.get("vram_mb")
        r = TrialRecord.from_frozen(t)
        note = "" if _measured(t) else f"{r.outcome}: {r.reason or ''}"
        if r.below_floor is not None:
            note = r.below_floor
        rows.append(
            ProfileRow(
                "app",
                name,
                t.number,
                "study",
                m.get("gen_tok_s"),
                m.get("ttft_ms"),
                m.get("warm_ttft_ms"),
                vram,
                free_vram_need_mb(vram) if vram is not None else None,
                _int(settings_of(t).get("n_ctx")),
                note,
            )
        )
    for row in reference_rows(trials, record):
        if row.state == "ok":
            rows.append(
                ProfileRow(
                    "app",
                    f"{row.name} (side by side)",
                    row.number,
                    f"confirmation session {row.session}",
                    row.tok_s,
                    row.cold_ttft_ms,
                    row.warm_ttft_ms,
                    row.vram_mb,
                    free_vram_need_mb(row.vram_mb) if row.vram_mb is not None else None,
                    _int(row.settings.get("n_ctx")),
                )
            )
    return rows


def _tier_rows(profile: Profile, source: str, confirmed: dict[str, Any]) -> list[ProfileRow]:
    rows = []
    for tier in profile.tiers:
        m = tier.measured
        name = tier.name + (" (default)" if tier.name == profile.default_tier else "")
        if m is None:
            rows.append(
                ProfileRow(
                    "tuned",
                    name,
                    None,
                    source,
                    None,
                    None,
                    None,
                    None,
                    tier.min_vram_free_mb,
                    tier.llama.n_ctx,
                    "not measured",
                )
            )
            continue
        conf = (confirmed.get(str(m.trial)) or {}).get("status") == "ok"
        where = source if source != "the study" else ("confirmed" if conf else "study")
        rows.append(
            ProfileRow(
                "tuned",
                name,
                m.trial,
                where,
                m.gen_tok_s.median,
                m.ttft_ms.median,
                m.warm_ttft_ms.median if m.warm_ttft_ms is not None else None,
                m.vram_mb,
                tier.min_vram_free_mb,
                tier.llama.n_ctx,
            )
        )
    return rows


def _exported(
    study: optuna.Study,
    prefer: Prefer,
    storage: str,
    profile: Profile | None,
    profile_path: str | None,
) -> tuple[Profile | None, str, str]:
    """The tiers to compare with: the profile file given, else the ones export would write."""
    if profile is not None:
        return profile, f"profile file {profile_path}", ""
    from tuner.profile.export import study_profile

    try:
        return study_profile(study, prefer=prefer, storage=storage), "the study", ""
    except UserError as exc:
        return None, "", f"exported tiers ({exc})"


def _lack(missing: dict[str, list[str]], section: str, what: str) -> None:
    """Note what a section of the report goes without."""
    missing.setdefault(section, []).append(what)


def _before_after_rows(
    trials: Sequence[FrozenTrial],
    record: StudyRecord,
    facts: StudyFacts,
    exported: tuple[Profile | None, str, str],
    missing: dict[str, list[str]],
) -> list[ProfileRow]:
    """The app's profiles, then the tuned tiers; notes what the table goes without."""
    tiers, profile_source, why = exported
    rows = _app_rows(trials, record)
    if not rows:
        _lack(missing, "before_after", "the app's own profiles (run without baselines)")
    if tiers is not None:
        rows += _tier_rows(tiers, profile_source, record.confirmed)
    else:
        _lack(missing, "before_after", why)
    if not record.confirmed:
        _lack(missing, "before_after", "confirmed figures (exported without --confirm)")
    if not record.reference_runs:
        _lack(
            missing, "before_after", "the app's profile re-measured side by side (made before it)"
        )
    if facts.min_ctx is None:
        _lack(missing, "before_after", "the context floor (made before it)")
    if facts.budget_mb is None:
        _lack(missing, "before_after", "the VRAM budget")
    return rows


def _chosen_tok_s(best: FrozenTrial | None, record: StudyRecord, facts: StudyFacts) -> float | None:
    """The chosen trial's tok/s: its confirmed figure where export confirmed it."""
    if best is None:
        return None
    conf = record.confirmed.get(str(best.number)) or {}
    values = conf["values"] if conf.get("status") == "ok" else best.values
    return float(values[facts.tok_s_index])


def report_data(
    study: optuna.Study,
    *,
    storage: str,
    prefer: Prefer = Prefer.BALANCED,
    profile: Profile | None = None,
    profile_path: str | None = None,
) -> ReportData:
    """Every section of the report, computed from the study (and the profile file, if any)."""
    trials = study.get_trials(deepcopy=False)
    record = StudyRecord.from_study(study)
    facts = study_facts(study, storage)
    missing: dict[str, list[str]] = {}
    exported = _exported(study, prefer, storage, profile, profile_path)
    rows = _before_after_rows(trials, record, facts, exported, missing)

    points = trial_points(trials)
    front = [t.number for t in pareto_front(trials)]
    best = choose_best(trials, prefer)
    if not points:
        _lack(missing, "tradeoff", "any trial with figures")
    if not front:
        _lack(missing, "tradeoff", "a trial within the VRAM budget and at the context floor")

    if not any(p.vram_mb is not None for p in points):
        _lack(missing, "layers", "measured VRAM (a CPU-only build reads none)")
    pairs = vram_pairs(trials)
    if not pairs:
        _lack(missing, "vram", "predicted VRAM (predicted only where trials can use an NVIDIA GPU)")

    imp = importances(study, facts.tok_s_index)
    if imp.note:
        _lack(missing, "importance", f"parameter importances: {imp.note}")
    bw = bandwidth(facts, best, _chosen_tok_s(best, record, facts))

    lacking = provenance_missing(study)
    if lacking:
        missing["provenance"] = lacking
    return ReportData(
        facts=facts,
        prefer=prefer,
        profile_source=exported[1],
        before_after=rows,
        points=points,
        unplotted=unplotted(trials, points),
        reused=sum(1 for t in trials if _measured(t) and status_of(t) == "reused"),
        pareto=front,
        chosen=best.number if best is not None else None,
        history=history(trials),
        vram_pairs=pairs,
        importances=imp,
        bandwidth=bw,
        failures=failure_rows(trials, points),
        confirmations=confirmation_rows(trials, record),
        provenance=provenance(study, storage),
        missing=missing,
    )
