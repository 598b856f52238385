"""Run the Optuna study: each trial measures one settings candidate in a fresh child process."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.launch import (
    Launcher,
    TrialSpec,
    owner_alive,
    remove_orphan_folders,
    this_process,
)
from objectives.llama_buffers import parse_buffers
from objectives.metrics import NO_READING
from tuner.echo import Echo
from tuner.errors import StudyAborted, UserError
from tuner.space import key_of, starting_trials
from tuner.study._interrupt import describe, exit_code, termination_as_interrupt
from tuner.study._prepare import Context
from tuner.study._progress import Progress
from tuner.study._pruning import make_watcher
from tuner.study._spill import (
    SPILL_ATTR,
    measured_points,
    spill_point,
    spill_reason,
    spilled_over_budget_mb,
)
from tuner.study._storage import GRACE_S, open_storage
from tuner.study._trial_record import (
    CONSTRAINT_KEY,
    constraint_values,
    copy_constraints,
    objective_values,
    record_child,
    set_constraints,
)
from tuner.vram import UNMEASURED_ATTR, unmeasured_reason, with_vram_reading

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


def counted_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Finished trials that count toward --trials (interrupted or retried ones don't)."""
    retried = {t.user_attrs.get("retry_of") for t in trials} | {
        t.system_attrs.get("failed_trial") for t in trials
    }
    return [
        t
        for t in trials
        if t.state.is_finished()
        and t.user_attrs.get("status") != "interrupted"
        and t.number not in retried
    ]


KILLED = "its dm-tune run ended without finishing it (killed?); re-run to redo it"


def _mark_interrupted(study: optuna.Study, t: FrozenTrial, reason: str) -> bool:
    """Fail a RUNNING trial that nobody will finish, as interrupted (so it is re-run)."""
    storage = study._storage
    try:  # the attributes first: a finished trial can't take them
        storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
        storage.set_trial_user_attr(t._trial_id, "reason", reason)
        return storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # another run got there first


def _fail_orphans(study: optuna.Study) -> int:
    """RUNNING trials owned by a run on this host that is gone: known at once, without
    waiting for the heartbeat's grace period (that one covers other hosts)."""
    me = this_process()
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("owner")
        if (
            isinstance(owner, dict)
            and owner.get("host") == me["host"]
            and not owner_alive(owner)
            and _mark_interrupted(study, t, KILLED)
        ):
            n += 1
    return n


def _on_stale(study: optuna.Study, t: FrozenTrial) -> None:
    """Optuna failed a trial whose run stopped its heartbeat (killed, on any host): re-run it.
    The failed trial can't take attributes any more; its retry says why it exists."""
    host = (t.user_attrs.get("owner") or {}).get("host", "another machine")
    note = f"its dm-tune run (on {host}) sent no heartbeat for {GRACE_S} s"
    if t.number not in {o.user_attrs.get("retry_of") for o in study.get_trials(deepcopy=False)}:
        _retry(study, t, note)


def _retry(study: optuna.Study, t: FrozenTrial, note: str | None = None) -> None:
    attrs: dict[str, Any] = {"retry_of": t.number}
    for k in ("baseline", "start", APP_N_CTX):
        if k in t.user_attrs:
            attrs[k] = t.user_attrs[k]
    if note:
        attrs["retry_reason"] = note
    study.enqueue_trial(t.params, user_attrs=attrs, skip_if_exists=False)


def _requeue_interrupted(study: optuna.Study) -> int:
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    n = 0
    for t in trials:
        if t.user_attrs.get("status") == "interrupted" and t.number not in retried:
            _retry(study, t)
            n += 1
    return n


def _enqueue_baselines(study: optuna.Study, ctx: Context) -> tuple[list[str], list[str]]:
    """The app's profiles, then the start points. A profile whose n_ctx is below the context
    floor is enqueued at the lowest searched n_ctx (Optuna's distribution has no lower one)
    and run with its own n_ctx, kept in the APP_N_CTX user attribute; it is measured for the
    before/after table and is never feasible (the n_ctx_below_floor constraint).
    Only those no trial of the study carries yet are enqueued."""
    names: dict[str, list[str]] = {"baseline": [], "start": []}
    lowest = min(ctx.space.n_ctx_choices)
    have = {
        (kind, t.user_attrs[kind])
        for t in study.get_trials(deepcopy=False)
        for kind in names
        if kind in t.user_attrs
    }
    guard = ctx.vram_guard
    fit = None if guard is None else (lambda p: guard.most_layers(p, ctx.space.machine.layers))
    for params, attrs in starting_trials(ctx.space, ctx.baselines, ctx.starts, fit):
        if set(attrs.items()) <= have:
            continue  # already measured, running or waiting: exactly once
        user_attrs: dict[str, Any] = dict(attrs)
        if int(params["n_ctx"]) < lowest:
            user_attrs[APP_N_CTX] = int(params["n_ctx"])
            params = {**params, "n_ctx": lowest}
        study.enqueue_trial(params, user_attrs=user_attrs, skip_if_exists=False)
        for kind, name in attrs.items():
            names[kind].append(name)
    return names["baseline"], names["start"]


def open_study(ctx: Context, echo: Echo) -> optuna.Study:
    """Create the study, or resume it when its settings match; refuse a mismatched resume."""
    storage = open_storage(ctx.storage, on_stale=_on_stale)
    sampler = optuna.samplers.TPESampler(
        seed=ctx.settings.seed, multivariate=True, n_startup_trials=STARTUP_TRIALS
    )
    study = optuna.create_study(
        storage=storage,
        study_name=ctx.study_name,
        directions=DIRECTIONS,
        sampler=sampler,
        load_if_exists=True,
    )
    fp = ctx.fingerprint()
    old = study.user_attrs.get("settings")
    if old is None:
        study.set_user_attr("model", _model_attr(ctx))
        study.set_user_attr("hardware", ctx.hardware.to_dict())
        study.set_user_attr("llama_cpp_version", ctx.probe.llama_cpp_version)
        study.set_user_attr("gpu_offload", ctx.probe.gpu_offload)
        study.set_user_attr("workload_spec", ctx.workload_spec())
        study.set_user_attr("confirm_spec", ctx.confirm_spec())
        study.set_user_attr("context_floor", ctx.floor.to_profile())
        study.set_user_attr("quality_affecting", list(ctx.space.config.quality_affecting()))
        study.set_user_attr("objectives", ["gen_tok_s", f"{ctx.settings.latency}_ttft_ms"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["gen_tok_s", f"{ctx.settings.latency}_ttft_ms"])
        study.set_user_attr("settings", fp)  # last: a study with settings is complete
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
        if (
            t.number < number
            and t.user_attrs.get("key") == key
            and t.user_attrs.get("status") not in ("interrupted", None)
        ):
            return t
    return None


def make_objective(
    ctx: Context, study: optuna.Study, launcher: Launcher
) -> Callable[[optuna.Trial], list[float]]:
    s = ctx.settings
    budget = s.vram_budget_mb
    offload = bool(ctx.probe.gpu_offload)
    guard = ctx.vram_guard
    if guard is not None:
        guard.seed(study.get_trials(deepcopy=False))

    def objective(trial: optuna.Trial) -> list[float]:
        trial.set_user_attr("owner", this_process())  # a resume knows if its run is gone
        params = ctx.space.suggest(trial)
        if APP_N_CTX in trial.user_attrs:  # an app profile below the floor: its own n_ctx
            params["n_ctx"] = int(trial.user_attrs[APP_N_CTX])
        key = key_of(params)
        trial.set_user_attr("llama_kwargs", params)
        trial.set_user_attr("key", key)
        prev = _previous(study, key, trial.number)
        if prev is not None:
            trial.set_user_attr("reused_from", prev.number)
            if prev.state == TrialState.COMPLETE and prev.values is not None:
                trial.set_user_attr("status", "reused")
                trial.set_user_attr("reason", f"same settings as trial {prev.number}")
                for k in ("metrics", "gpu", "llama_buffers", SPILL_ATTR, UNMEASURED_ATTR):
                    if k in prev.user_attrs:
                        trial.set_user_attr(k, prev.user_attrs[k])
                copy_constraints(trial, prev)
                return list(prev.values)
            for k in ("status", "returncode", "phase"):
                if k in prev.user_attrs:
                    trial.set_user_attr(k, prev.user_attrs[k])
            reason = f"same settings as trial {prev.number}: {prev.user_attrs.get('reason', '')}"
            trial.set_user_attr("reason", reason)
            if prev.state == TrialState.PRUNED:
                raise optuna.TrialPruned(reason)
            raise TrialFailed(reason)
        pred = None
        if guard is not None:
            pred = guard.predict(params)
            trial.set_user_attr("vram_predicted_mb", round(pred.total_mb, 1))
            trial.set_user_attr("vram_predicted", pred.to_dict())
            if guard.over_budget(pred):
                trial.set_user_attr("status", "over_budget_predicted")
                trial.set_user_attr("reason", guard.skip_reason(pred))
                raise optuna.TrialPruned("predicted over the VRAM budget")
        is_app = "baseline" in trial.user_attrs
        workload = ctx.workload_spec(int(params["n_ctx"]))
        if int(params["n_ctx"]) < ctx.floor.min_ctx:
            trial.set_user_attr(
                "below_floor",
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
            trial.set_user_attr("status", "interrupted")
            trial.set_user_attr("reason", describe(exc))
            raise
        buffers = parse_buffers(str(res.payload.get("llama_log", "")))
        ngl = int(params.get("n_gpu_layers", 0))
        res = with_vram_reading(res, offload=offload, n_gpu_layers=ngl, buffers=buffers)
        record_child(trial, res)
        if buffers:
            trial.set_user_attr("llama_buffers", buffers)
        if res.status == "pruned":
            trial.set_user_attr("watch", res.payload.get("watch", {}))
            raise optuna.TrialPruned(res.reason)
        if res.status != "ok" or res.metrics is None:
            raise TrialFailed(res.reason or res.status)
        vram, source = res.metrics.vram_mb, res.metrics.vram_source
        if guard is not None and pred is not None and vram:
            trial.set_user_attr(
                "vram_prediction_error_pct", round((pred.total_mb - vram) / vram * 100, 2)
            )
            guard.learn(params, pred, vram)
        constraints = constraint_values(
            vram, budget, int(params["n_ctx"]), ctx.floor.min_ctx, source
        )
        if source == NO_READING:
            trial.set_user_attr(UNMEASURED_ATTR, unmeasured_reason())
        point = spill_point(trial.number, params, res.metrics.gen_tok_s, asdict(res.gpu))
        earlier = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        spill = spill_reason(point, measured_points(earlier))
        if spill is not None and point.device_total_mb is not None:
            trial.set_user_attr(SPILL_ATTR, spill)
            constraints[CONSTRAINT_KEY] = spilled_over_budget_mb(
                constraints[CONSTRAINT_KEY], vram, point.device_total_mb
            )
        set_constraints(trial, constraints)
        return objective_values(res.metrics.to_dict(), s.latency)

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
                make_objective(ctx, study, launcher),
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
