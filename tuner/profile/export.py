"""Export the best feasible settings of a study as the profile YAML Desktop-Mate loads."""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import optuna
from optuna.exceptions import StorageInternalError
from optuna.trial import FrozenTrial

from objectives.launch import trial_launcher
from tuner.echo import Echo
from tuner.errors import UserError
from tuner.machine import measurement_lock
from tuner.model_file import sha256_cached
from tuner.profile.build import build_profile, write_profile
from tuner.profile.llm_profile import (
    Conversation,
    Measured,
    Prefer,
    Profile,
    ProfileError,
    Tier,
    quick_digest,
)
from tuner.space import KV_KNOBS
from tuner.study import (
    REFERENCE,
    Remeasure,
    StudyRecord,
    TrialRecord,
    apply_confirmations,
    check_storage,
    check_study_name,
    confirm,
    confirm_trials,
    describe_settings,
    floor_cost,
    load_existing_study,
    reference_trial,
    storage_failure,
)

MAX_CONFIRM_ROUNDS = 3


def _provenance(study: optuna.Study, storage: str) -> dict[str, Any]:
    record = StudyRecord.from_study(study)
    hw = record.hardware or {}
    gpus = record.gpus
    return {
        "gpu": gpus[0]["name"] if gpus else None,
        "driver": gpus[0]["driver"] if gpus else None,
        "cpu": f"{hw.get('cpu', 'unknown CPU')} ({hw.get('logical_cores', '?')} threads)",
        "llama_cpp_version": str(record.llama_cpp_version or "unknown"),
        "study": study.study_name,
        "storage": storage,
    }


@dataclass(frozen=True)
class BeforeAfter:
    """The exported default tier against the app's own profile, and where both figures come
    from: one interleaved confirmation session (`session`), or the study's figures (None)."""

    app_trial: int
    app_values: tuple[float, float]  # tok/s, first-token latency (the study's objective)
    tier_values: tuple[float, float]
    session: int | None

    @property
    def tok_s_pct(self) -> float:
        return (self.tier_values[0] / self.app_values[0] - 1) * 100

    @property
    def latency_pct(self) -> float:
        return (self.tier_values[1] / self.app_values[1] - 1) * 100


def before_after(study: optuna.Study, tier_trial: int) -> BeforeAfter | None:
    """The default tier (trial `tier_trial`) vs the app's "performance" profile: the figures of
    the confirmation session that measured both side by side when there is one."""
    ref = reference_trial(study.get_trials(deepcopy=False))
    if ref is None or ref.values is None:
        return None
    record = StudyRecord.from_study(study)
    mine = record.confirmed.get(str(tier_trial), {})
    runs = record.reference_runs
    session: Any = mine.get("session")
    app = runs.get(str(session)) if session is not None else None
    if mine.get("status") == "ok" and app is not None and app.get("status") == "ok":
        return BeforeAfter(ref.number, _pair(app["values"]), _pair(mine["values"]), int(session))
    tier = study.trials[tier_trial]
    if tier.values is None:
        return None
    return BeforeAfter(ref.number, _pair(ref.values), _pair(tier.values), None)


def _pair(values: list[float]) -> tuple[float, float]:
    return float(values[0]), float(values[1])


def _compare_to_baseline(study: optuna.Study, tier: Any, echo: Echo) -> None:
    """Default tier vs Desktop-Mate's own "performance" profile measured in the same study."""
    if tier.measured is None:
        return
    ba = before_after(study, tier.measured.trial)
    if ba is None:
        ref = next(
            (t for t in study.trials if TrialRecord.from_frozen(t).baseline == REFERENCE), None
        )
        if ref is not None:
            echo(f"  Desktop-Mate's {REFERENCE} profile (trial {ref.number}) did not run here.")
        return
    where = (
        f"both re-measured side by side, confirmation session {ba.session}"
        if ba.session is not None
        else "study figures, not re-measured side by side"
    )
    echo(
        f"  vs Desktop-Mate's {REFERENCE} profile (trial {ba.app_trial}: {ba.app_values[0]:.1f} "
        f"tok/s, {ba.app_values[1]:.0f} ms; {where}): {ba.tok_s_pct:+.1f} % tok/s, "
        f"{ba.latency_pct:+.1f} % first-token latency"
    )


def _figures(m: Measured) -> str:
    """A tier's steady-state figures, then the next turn's and the early turn's when known."""
    out = f"steady-state turn {m.gen_tok_s.median:.1f} tok/s, first token {m.ttft_ms.median:.0f} ms"
    extra = []
    if m.warm_ttft_ms is not None:
        extra.append(f"next turn {m.warm_ttft_ms.median:.0f} ms")
    if m.early_ttft_ms is not None:
        early = f"early turn {m.early_ttft_ms:.0f} ms"
        if m.early_gen_tok_s is not None:
            early += f", {m.early_gen_tok_s:.1f} tok/s"
        extra.append(early)
    return out + (f" ({'; '.join(extra)})" if extra else "")


def _conversation(study: optuna.Study, trials: list[FrozenTrial]) -> dict[str, Any] | None:
    """The profile's `conversation`: the study's context floor and what it cost (study
    figures on both sides: the app's profiles below the floor are not re-measured)."""
    floor = StudyRecord.from_study(study).context_floor
    if floor is None:
        return None  # a study made before the floor: a version 1 profile
    cost = floor_cost(trials)
    return {**floor, **({"floor_cost": cost} if cost else {})}


def _model_ref(m: dict[str, Any]) -> dict[str, Any]:
    """The profile's `model`, with the quick digest the app checks when the study's model file
    is still where it was and still the file measured (its cached sha256); else without it
    (the app then checks the size only)."""
    ref = {"file": m["file"], "size_bytes": m["size_bytes"], "sha256": m["sha256"]}
    path = Path(str(m.get("path", "")))
    try:
        same = path.is_file() and path.stat().st_size == m["size_bytes"]
        if same and sha256_cached(path) == m["sha256"]:
            ref["quick_digest"] = quick_digest(path)
    except OSError:
        pass
    return ref


def study_profile(study: optuna.Study, *, prefer: Prefer, storage: str) -> Profile:
    """The tiered profile of the study's feasible trials, on confirmed figures where the study
    holds them (`confirmed`); what export writes, and what the report compares with."""
    record = StudyRecord.from_study(study)
    if record.model is None or record.settings is None:
        raise UserError(
            f"study '{study.study_name}' was not made by dm-tune run; nothing to export"
        )
    model = _model_ref(record.model)
    gpu_present = bool(record.gpus) and bool(record.gpu_offload)
    confirmed = record.confirmed
    trials = apply_confirmations(study.get_trials(deepcopy=False), confirmed)
    ok = {int(n) for n, c in confirmed.items() if c.get("status") == "ok"}
    try:
        return build_profile(
            trials,
            confirmed=ok or None,
            model=model,
            provenance=_provenance(study, storage),
            budget_mb=float(record.settings["vram_budget_mb"]),
            prefer=prefer,
            gpu_present=gpu_present,
            conversation=_conversation(study, study.get_trials(deepcopy=False)),
            # the search space's flags (studies made before they were recorded: every KV knob)
            quality_knobs=tuple(
                KV_KNOBS if record.quality_affecting is None else record.quality_affecting
            ),
        )
    except ProfileError as exc:
        raise UserError(str(exc)) from None


def export_profile(
    study: optuna.Study,
    *,
    prefer: Prefer,
    out_dir: Path,
    storage: str,
    output: Path | None = None,
    remeasure: Remeasure | None = None,
    echo: Echo = print,
) -> Path:
    """Build the tiered profile from the study's feasible trials and write it atomically.

    With `remeasure`, every tier's trial that was not confirmed yet is measured again first and
    the profile is rebuilt on the confirmed numbers, so each tier records confirmed values."""

    profile = study_profile(study, prefer=prefer, storage=storage)
    if remeasure is not None:
        profile = _confirm_tiers(study, profile, prefer, storage, remeasure, echo)
    path = output or out_dir / f"{check_study_name(study.study_name)}.yaml"
    try:
        write_profile(path, profile)
    except OSError as exc:
        raise UserError(f"cannot write the profile to {path}: {exc.strerror}") from None
    _echo_summary(study, profile, path, prefer, echo)
    return path


def _confirm_tiers(
    study: optuna.Study,
    profile: Profile,
    prefer: Prefer,
    storage: str,
    remeasure: Remeasure,
    echo: Echo,
) -> Profile:
    """Confirm the tiers' trials not confirmed yet and rebuild, until every tier stands on
    confirmed figures (a confirmed figure can move a tier onto another trial; a few rounds at
    most: each confirms new trials only)."""
    for _ in range(MAX_CONFIRM_ROUNDS):
        done = StudyRecord.from_study(study).confirmed
        numbers = {t.measured.trial for t in profile.tiers if t.measured is not None}
        todo = [study.trials[n] for n in sorted(numbers) if str(n) not in done]
        if not todo:
            break
        echo(f"Confirming the tiers' settings ({len(todo)} more):")
        confirm_trials(study, todo, remeasure, echo)
        profile = study_profile(study, prefer=prefer, storage=storage)
    return profile


def _echo_summary(
    study: optuna.Study, profile: Profile, path: Path, prefer: Prefer, echo: Echo
) -> None:
    """What was written: the context floor, one line per tier, the baseline comparison."""
    default = profile.tier(profile.default_tier)
    echo(f"Profile written: {path}")
    if profile.conversation is not None:
        echo(_floor_line(profile.conversation))
    for tier in profile.tiers:
        echo(_tier_line(tier, profile.default_tier))
    _compare_to_baseline(study, default, echo)
    if profile.quality_affecting:
        echo(
            f"note: {', '.join(profile.quality_affecting)} change the model's answers "
            "(quantized KV cache): check answer quality before shipping this profile"
        )
    echo(
        f"Chosen by --prefer {prefer} among the Pareto-optimal trials within the VRAM budget "
        f"(docs/selection.md). Load it: Llama(model_path=..., **tier.llama). "
        f"Default tier: {default.name}."
    )


def _floor_line(c: Conversation) -> str:
    return (
        f"  context floor: n_ctx >= {c.min_ctx} in every tier ({c.min_ctx_rule}: the app's "
        f"steady-state turn needs {c.steady_state_tokens} tokens with its {c.turns_kept} "
        f"interactions and a {c.max_tokens}-token reply; every reply at {c.max_tokens}: "
        f"{c.worst_case_tokens})"
    )


def _tier_line(tier: Tier, default_tier: str) -> str:
    mark = " (default)" if tier.name == default_tier else ""
    meas = tier.measured
    perf = _figures(meas) if meas is not None else "not measured"
    return (
        f"  tier {tier.name}{mark}: needs {tier.min_vram_free_mb:.0f} MB free VRAM | "
        f"{describe_settings(tier.llama.kwargs())} | {perf}"
    )


class Exported(NamedTuple):
    """What export_study wrote: the study's name (for the inspect hints) and the profile."""

    study_name: str
    path: Path


def export_study(
    storage: str,
    study_name: str | None,
    *,
    prefer: Prefer,
    out_dir: Path,
    output: Path | None,
    confirm_k: int,
    confirm_runs: int,
    timeout_s: float,
    wait: bool,
    echo: Echo = print,
) -> Exported:
    """`dm-tune export`: load the study, re-measure its top `confirm_k` candidates first when
    asked (holding the machine's measurement lock: only then does it measure), and export."""
    if confirm_k < 0 or confirm_runs < 1:
        raise UserError("--confirm must be 0 or more and --confirm-runs at least 1")
    if confirm_k:  # the re-measurements are recorded in the study: it must be writable
        check_storage(storage)
    s = load_existing_study(storage, study_name)
    if output is None:  # the study's name becomes the file name
        check_study_name(s.study_name)
    lock = (
        measurement_lock("dm-tune export", f"study '{s.study_name}'", wait=wait, echo=echo)
        if confirm_k
        else nullcontext()
    )
    with lock, ExitStack() as stack:
        how = None
        if confirm_k:
            how = _remeasure(s, confirm_runs, timeout_s, stack)
            try:
                confirm(s, prefer=prefer, k=confirm_k, how=how, echo=echo)
            except StorageInternalError as exc:
                raise storage_failure(exc, storage) from None
        path = export_profile(
            s,
            prefer=prefer,
            out_dir=out_dir,
            storage=storage,
            output=output,
            remeasure=how,
            echo=echo,
        )
    return Exported(s.study_name, path)


def _remeasure(study: optuna.Study, runs: int, timeout_s: float, stack: ExitStack) -> Remeasure:
    """How to re-measure the study's trials: its model file and confirmation workload, in
    pre-warmed trial children that `stack` ends."""
    record = StudyRecord.from_study(study)
    model = Path((record.model or {}).get("path", ""))
    workload = record.confirm_spec or record.workload_spec
    if not model.is_file() or workload is None:
        raise UserError(
            f"cannot re-measure: the model file {model} is gone or the study has no "
            "workload; export without --confirm"
        )
    return Remeasure(
        runs=runs,
        timeout_s=timeout_s,
        model_path=model,
        workload=workload,
        launcher=stack.enter_context(trial_launcher()),  # pre-warmed trial children
    )
