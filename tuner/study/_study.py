"""Run the Optuna study: each trial measures one settings candidate in a fresh child process."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.launch import (
    ChildResult,
    Launcher,
    TrialSpec,
    owner_alive,
    remove_orphan_folders,
    this_process,
)
from objectives.llama_buffers import parse_buffers
from objectives.metrics import NO_READING, TrialMetrics
from tuner.echo import Echo
from tuner.errors import StudyAborted, UserError
from tuner.space import key_of, starting_trials
from tuner.study._constraints import CONSTRAINT_KEY, constraint_values, set_constraints
from tuner.study._heartbeat import heartbeat
from tuner.study._interrupt import describe, exit_code, termination_as_interrupt
from tuner.study._prepare import Context, describe_machine
from tuner.study._progress import Progress
from tuner.study._pruning import make_watcher
from tuner.study._share import counted_trials, unneeded
from tuner.study._spill import (
    measured_points,
    spill_point,
    spill_reason,
    spilled_over_budget_mb,
)
from tuner.study._storage import open_storage
from tuner.study._study_record import StudyRecord, record_study
from tuner.study._trial_record import (
    DUPLICATE,
    SURPLUS,
    TrialRecord,
    enqueue,
    enqueue_retry,
    mark_interrupted,
    objective_values,
    record_below_floor,
    record_buffers,
    record_child,
    record_not_needed,
    record_outcome,
    record_owner,
    record_prediction,
    record_prediction_error,
    record_reuse,
    record_settings,
    record_spill,
    record_unmeasured,
    record_watch,
)
from tuner.study._workers import sampler_seed
from tuner.vram import VramGuard, VramPrediction, unmeasured_reason, with_vram_reading

STARTUP_TRIALS = 10  # TPE samples at random until the study holds this many trials
APP_N_CTX = "app_n_ctx"  # a below-floor profile's own n_ctx (see _enqueue_baselines)
DIRECTIONS: list[optuna.study.StudyDirection] = [
    optuna.study.StudyDirection.MAXIMIZE,
    optuna.study.StudyDirection.MINIMIZE,
]  # generation tok/s, first-token latency (ms)


class TrialFailed(Exception):
    """A trial whose settings did not run (crash, OOM, timeout...). The study carries on."""


@dataclass
class RunResult:
    study: optuna.Study
    ran: int  # trials run by this invocation
    interrupted: bool = False
    exit_code: int = 0  # 130 after Ctrl-C, 143 after SIGTERM
    aborted: str | None = None
    notes: list[str] = field(default_factory=list)


KILLED = "its dm-tune run ended without finishing it (killed?); re-run to redo it"


def _fail_orphans(study: optuna.Study) -> int:
    """RUNNING trials owned by a run on this host that is gone: known at once, without
    waiting for the heartbeat's grace period (that one covers other hosts)."""
    me = this_process()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = TrialRecord.from_frozen(t).owner
        if (
            owner is not None
            and owner.get("host") == me["host"]
            and not owner_alive(owner)
            and mark_interrupted(study, t, KILLED)
        ):
            n += 1
    return n


def _on_stale(study: optuna.Study, t: FrozenTrial, *, grace_s: int) -> None:
    """Optuna failed a trial whose run stopped its heartbeat for `grace_s` (killed, on any
    host): re-run it. The failed trial can't take attributes any more; its retry says why it
    exists."""
    host = (TrialRecord.from_frozen(t).owner or {}).get("host", "another machine")
    note = f"its dm-tune run (on {host}) sent no heartbeat for {grace_s} s"
    retried = {TrialRecord.from_frozen(o).retry_of for o in study.get_trials(deepcopy=False)}
    if t.number not in retried:
        enqueue_retry(study, t, note)


def _requeue_interrupted(study: optuna.Study) -> int:
    trials = study.get_trials(deepcopy=False)
    records = [TrialRecord.from_frozen(t) for t in trials]
    retried = {r.retry_of for r in records}
    n = 0
    for t, r in zip(trials, records, strict=True):
        if r.status == "interrupted" and t.number not in retried:
            enqueue_retry(study, t)
            n += 1
    return n


def _enqueue_baselines(study: optuna.Study, ctx: Context) -> tuple[list[str], list[str]]:
    """The app's profiles, then the start points. A profile whose n_ctx is below the context
    floor is enqueued at the lowest searched n_ctx (Optuna's distribution has no lower one)
    and run with its own n_ctx, kept in the record's `app_n_ctx`; it is measured for the
    before/after table and is never feasible (the n_ctx_below_floor constraint).
    Only those no trial of the study carries yet are enqueued; workers starting together may
    both enqueue one: the later trial is then a duplicate (tuner/study/_share.py)."""
    names: dict[str, list[str]] = {"baseline": [], "start": []}
    lowest = min(ctx.space.n_ctx_choices)
    records = [TrialRecord.from_frozen(t) for t in study.get_trials(deepcopy=False)]
    have = {r.role for r in records if r.status not in (SURPLUS, DUPLICATE)}
    guard = ctx.vram_guard
    fit = None if guard is None else (lambda p: guard.most_layers(p, ctx.space.machine.layers))
    for params, attrs in starting_trials(ctx.space, ctx.baselines, ctx.starts, fit):
        if set(attrs.items()) <= have:
            continue  # already measured, running or waiting: exactly once
        app_n_ctx = None
        if int(params["n_ctx"]) < lowest:
            app_n_ctx = int(params["n_ctx"])
            params = {**params, "n_ctx": lowest}
        enqueue(study, params, attrs, app_n_ctx=app_n_ctx)
        for kind, name in attrs.items():
            names[kind].append(name)
    return names["baseline"], names["start"]


def open_study(ctx: Context, echo: Echo) -> optuna.Study:
    """Create the study, or resume it when its settings match; refuse a mismatched resume."""
    beat = heartbeat()
    storage = open_storage(ctx.storage, beat, on_stale=partial(_on_stale, grace_s=beat.grace_s))
    sampler = optuna.samplers.TPESampler(
        seed=sampler_seed(ctx.settings.seed), multivariate=True, n_startup_trials=STARTUP_TRIALS
    )
    study = optuna.create_study(
        storage=storage,
        study_name=ctx.study_name,
        directions=DIRECTIONS,
        sampler=sampler,
        load_if_exists=True,
    )
    fp = ctx.fingerprint()
    recorded = StudyRecord.from_study(study)
    old = recorded.settings
    if old is not None:  # first: another machine type also changes the space's digest
        _check_machine(ctx, recorded.machine)
    if old is None:
        names = ["gen_tok_s", f"{ctx.settings.latency}_ttft_ms"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
        record = StudyRecord(
            model=_model_attr(ctx),
            hardware=ctx.hardware.to_dict(),
            llama_cpp_version=ctx.probe.llama_cpp_version,
            gpu_offload=ctx.probe.gpu_offload,
            workload_spec=ctx.workload_spec(),
            confirm_spec=ctx.confirm_spec(),
            context_floor=ctx.floor.to_profile(),
            objectives=names,
            quality_affecting=list(ctx.space.config.quality_affecting()),
            machine=ctx.machine(),
            settings=fp,
        )
        record_study(study, record)
    elif old != fp:
        diff = ", ".join(f"{k} {old.get(k)} -> {fp[k]}" for k in fp if old.get(k) != fp[k])
        raise UserError(
            f"study '{ctx.study_name}' was made with other settings ({diff}); resume it with "
            "the same options, or start a new one with --study NEW_NAME"
        )
    # Not only when the study is new: a first run that died before it got here must not
    # leave a study that never measures them (each is enqueued while no trial carries it).
    names, starts = _enqueue_baselines(study, ctx)
    if names:
        echo(f"Baselines first: Desktop-Mate's {', '.join(names)} profiles.")
    if starts:
        echo(f"Then dm-tune's start points: {', '.join(starts)} (configs/baselines.yaml).")
    return study


def _check_machine(ctx: Context, recorded: dict[str, Any] | None) -> None:
    """Refuse a worker on another machine type (a study made before machines were recorded
    takes any: it is left as it is)."""
    mine = ctx.machine()
    if recorded is None or recorded == mine:
        return
    raise UserError(
        f"this machine ({describe_machine(mine)}) differs from the study's "
        f"({describe_machine(recorded)}): a study holds one machine type; run with "
        f"--study {ctx.study_name}-{ctx.hardware.slug()} for this one"
    )


def _model_attr(ctx: Context) -> dict[str, Any]:
    m = ctx.model
    return {
        "path": str(m.path),
        "file": m.path.name,
        "size_bytes": m.size_bytes,
        "sha256": ctx.model_sha256,
        "architecture": m.architecture,
        "block_count": m.block_count,
        "offloadable_layers": m.offloadable_layers,
        "quantization": m.quantization,
        "context_length": m.context_length,
    }


def _previous(study: optuna.Study, key: str, number: int) -> FrozenTrial | None:
    """An earlier trial with identical normalized settings that already has an outcome."""
    finished = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
    for t in study.get_trials(deepcopy=False, states=finished):
        r = TrialRecord.from_frozen(t)
        if t.number < number and r.key == key and r.status not in ("interrupted", None):
            return t
    return None


def _seed_guard(guard: VramGuard, study: optuna.Study) -> None:
    """Teach the guard from the study's measured trials (a resumed study starts calibrated)."""
    records = [TrialRecord.from_frozen(t) for t in study.get_trials(deepcopy=False)]
    guard.seed(
        (r.llama_kwargs or {}, pred, vram)
        for r in records
        if (pred := r.vram_predicted) and (vram := r.vram_mb) is not None and r.status == "ok"
    )


def _trial_params(ctx: Context, trial: optuna.Trial) -> tuple[dict[str, Any], TrialRecord]:
    """The trial's settings (recorded), and what its enqueueing said about it."""
    record_owner(trial)
    enqueued = TrialRecord.from_running(trial)
    params = ctx.space.suggest(trial)
    if enqueued.app_n_ctx is not None:  # an app profile below the floor: its own n_ctx
        params["n_ctx"] = enqueued.app_n_ctx
    key = key_of(params)
    record_settings(trial, params, key)
    return params, enqueued


def _reuse(trial: optuna.Trial, prev: FrozenTrial) -> list[float]:
    """The outcome of an earlier trial with the same settings: its values, or its failure."""
    reason = record_reuse(trial, prev)
    if prev.state == TrialState.COMPLETE and prev.values is not None:
        return list(prev.values)
    if prev.state == TrialState.PRUNED:
        raise optuna.TrialPruned(reason)
    raise TrialFailed(reason)


def _predict(
    trial: optuna.Trial, guard: VramGuard | None, params: dict[str, Any]
) -> VramPrediction | None:
    """The guard's VRAM prediction (recorded); prunes a trial predicted over the budget."""
    if guard is None:
        return None
    pred = guard.predict(params)
    record_prediction(trial, pred)
    if guard.over_budget(pred):
        record_outcome(trial, "over_budget_predicted", guard.skip_reason(pred))
        raise optuna.TrialPruned("predicted over the VRAM budget")
    return pred


def _measure(
    ctx: Context,
    study: optuna.Study,
    launcher: Launcher,
    trial: optuna.Trial,
    params: dict[str, Any],
    is_app: bool,
) -> ChildResult:
    """Run the trial's child and record what it measured (with its VRAM reading)."""
    s = ctx.settings
    workload = ctx.workload_spec(int(params["n_ctx"]))
    if int(params["n_ctx"]) < ctx.floor.min_ctx:
        record_below_floor(
            trial,
            f"n_ctx {params['n_ctx']} is below the context floor {ctx.floor.min_ctx}: measured "
            f"with the last {workload['history_turns']} of {ctx.floor.turns_kept} "
            "interactions; the app's steady-state turn would overflow it",
        )
    spec = TrialSpec.of(ctx.model.path, params, workload)
    try:
        res = launcher.run(
            spec,
            s.trial_timeout_s,
            # the app's own profiles are measured whole: the before/after table needs them
            watcher=make_watcher(study) if s.prune and not is_app else None,
        )
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (tuner.study)
        record_outcome(trial, "interrupted", describe(exc))
        raise
    buffers = parse_buffers(str(res.payload.get("llama_log", "")))
    ngl = int(params.get("n_gpu_layers", 0))
    res = with_vram_reading(
        res, offload=bool(ctx.probe.gpu_offload), n_gpu_layers=ngl, buffers=buffers
    )
    record_child(trial, res)
    if buffers:
        record_buffers(trial, buffers)
    return res


def _measured(trial: optuna.Trial, res: ChildResult) -> TrialMetrics:
    """The child's metrics; a pruned or failed child ends the trial."""
    if res.status == "pruned":
        record_watch(trial, res.payload.get("watch", {}))
        raise optuna.TrialPruned(res.reason)
    if res.status != "ok" or res.metrics is None:
        raise TrialFailed(res.reason or res.status)
    return res.metrics


def _constrain(
    ctx: Context,
    study: optuna.Study,
    trial: optuna.Trial,
    params: dict[str, Any],
    res: ChildResult,
    metrics: TrialMetrics,
) -> None:
    """Set the trial's constraint values (VRAM over budget, spill included; context floor)."""
    vram, source = metrics.vram_mb, metrics.vram_source
    constraints = constraint_values(
        vram, ctx.settings.vram_budget_mb, int(params["n_ctx"]), ctx.floor.min_ctx, source
    )
    if source == NO_READING:
        record_unmeasured(trial, unmeasured_reason())
    point = spill_point(trial.number, params, metrics.gen_tok_s, asdict(res.gpu))
    earlier = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    spill = spill_reason(point, measured_points(earlier))
    if spill is not None and point.device_total_mb is not None:
        record_spill(trial, spill)
        constraints[CONSTRAINT_KEY] = spilled_over_budget_mb(
            constraints[CONSTRAINT_KEY], vram, point.device_total_mb
        )
    set_constraints(trial, constraints)


def _not_needed(study: optuna.Study, trial: optuna.Trial, total: int, echo: Echo) -> None:
    """End a trial the study does not need, before it measures anything: one too many for
    --trials (this worker then stops), or an enqueued trial an earlier one already runs."""
    why = unneeded(study.get_trials(deepcopy=False), trial.number, total)
    if why is None:
        return
    if why == SURPLUS:
        record_not_needed(trial, SURPLUS, f"the study already had its {total} trials")
        echo(f"The study has its {total} trials; this worker stops.")
        study.stop()
    else:
        record_not_needed(trial, DUPLICATE, "an earlier trial runs the same enqueued trial")
    raise TrialFailed(why)


def make_objective(
    ctx: Context,
    study: optuna.Study,
    launcher: Launcher,
    echo: Echo = print,
    total: int | None = None,
) -> Callable[[optuna.Trial], list[float]]:
    """The trial's objective; with `total` (run_study's --trials), a trial the study does not
    need ends unmeasured first (tuner/study/_share.py)."""
    guard = ctx.vram_guard
    if guard is not None:
        _seed_guard(guard, study)

    def objective(trial: optuna.Trial) -> list[float]:
        if total is not None:
            _not_needed(study, trial, total, echo)
        params, enqueued = _trial_params(ctx, trial)
        prev = _previous(study, key_of(params), trial.number)
        if prev is not None:
            return _reuse(trial, prev)
        pred = _predict(trial, guard, params)
        is_app = enqueued.baseline is not None
        res = _measure(ctx, study, launcher, trial, params, is_app)
        metrics = _measured(trial, res)
        vram = metrics.vram_mb
        if guard is not None and pred is not None and vram:
            record_prediction_error(trial, round((pred.total_mb - vram) / vram * 100, 2))
            guard.learn(params, pred, vram)
        _constrain(ctx, study, trial, params, res, metrics)
        return objective_values(metrics.to_dict(), ctx.settings.latency)

    return objective


def run_study(ctx: Context, launcher: Launcher, echo: Echo = print) -> RunResult:
    """Run trials until the study holds `settings.trials`, each child from `launcher`;
    Ctrl-C stops cleanly."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(ctx, echo)
    remove_orphan_folders()  # trial folders of killed runs on this machine
    orphans = _fail_orphans(study)
    if orphans:
        echo(f"{orphans} trial(s) were left running by a dm-tune run that was killed.")
    requeued = _requeue_interrupted(study)
    if requeued:
        echo(f"Re-running {requeued} trial(s) that an earlier run left unfinished.")
    done = len(counted_trials(study.get_trials(deepcopy=False)))
    todo = ctx.settings.trials - done
    result = RunResult(study=study, ran=0)
    if todo <= 0:
        echo(
            f"Study '{ctx.study_name}' already has {done} trials (target {ctx.settings.trials}); "
            "nothing to run. Use a larger --trials to extend it."
        )
        return result
    if done:
        echo(f"Resuming study '{ctx.study_name}': {done} trials kept, {todo} to run.")
    progress = Progress(
        study,
        total=ctx.settings.trials,
        start_count=done,
        latency=ctx.settings.latency,
        prefer=ctx.settings.prefer,
        max_same_failures=ctx.settings.max_same_failures,
        echo=echo,
    )
    t0 = time.perf_counter()
    try:
        with termination_as_interrupt():
            study.optimize(
                make_objective(ctx, study, launcher, echo, ctx.settings.trials),
                n_trials=todo,
                catch=(TrialFailed,),
                callbacks=[progress],
                gc_after_trial=False,
            )
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP
        result.interrupted = True
        result.exit_code = exit_code(exc)
    result.ran = progress.ran
    result.aborted = progress.abort_reason
    echo(f"Ran {progress.ran} trial(s) in {time.perf_counter() - t0:.0f} s.")
    if result.aborted:
        raise StudyAborted(result.aborted)
    return result
