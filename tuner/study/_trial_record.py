"""What dm-tune keeps of one trial: `TrialRecord.from_frozen` reads it back typed, and the
writers below store it, as Optuna user attributes named like the record's fields (the format
the dashboard and older studies hold). A study made by an older dm-tune lacks some of them:
those read as None (or empty)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.launch import ChildResult, Watch, this_process
from tuner.machine import WORKER_CORES_ENV
from tuner.study._constraints import copy_constraints, with_vram_constraint
from tuner.vram import UNMEASURED_ATTR, VramPrediction

SPILL_ATTR = "spill"  # the trial's user attribute with why it is a suspected spill
ROLE_ATTRS = ("baseline", "start")  # enqueued trials carry their name under one of these
SURPLUS = "surplus"  # a trial started when the study already had its --trials (another worker's)
DUPLICATE = "duplicate"  # an enqueued trial that an earlier trial already runs or ran
_FAILED_TRIAL = "failed_trial"  # Optuna's system attribute on the retry of a stale trial
# What a trial with the same settings as an earlier completed one takes from it.
_REUSED = ("metrics", "gpu", "llama_buffers", SPILL_ATTR, UNMEASURED_ATTR)
_REUSED_FAILURE = ("status", "returncode", "phase")


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _dict(v: Any) -> dict[str, Any] | None:
    return dict(v) if isinstance(v, dict) else None


def _floats(d: dict[str, Any]) -> dict[str, float]:
    return {k: f for k, v in d.items() if (f := _float(v)) is not None}


@dataclass(frozen=True)
class TrialRecord:
    """One trial as dm-tune stored it: where it came from, what it ran, what came out."""

    number: int
    state: TrialState
    params: dict[str, Any]  # Optuna's (the searched knobs)
    # Where it came from
    baseline: str | None = None  # the app's profile it measures (enqueued)
    start: str | None = None  # dm-tune's start point it measures (enqueued)
    app_n_ctx: int | None = None  # an app profile below the context floor: its own n_ctx
    retry_of: int | None = None  # the interrupted or stale trial it runs again
    retry_reason: str | None = None
    failed_trial: int | None = None  # Optuna's retry of a stale trial (a system attribute)
    owner: dict[str, Any] | None = None  # the run that ran it (objectives.launch.this_process)
    cpu_cores: str | None = None  # a `--gpus` worker's cores ("0-7"; "" not pinned)
    # What it ran
    llama_kwargs: dict[str, Any] | None = None  # the normalized settings passed to Llama(...)
    key: str | None = None  # tuner.space.key_of(llama_kwargs)
    reused_from: int | None = None  # an earlier trial with the same settings
    vram_predicted_mb: float | None = None  # the predictor's estimate before loading
    vram_predicted: dict[str, float] | None = None  # its parts (VramPrediction.to_dict)
    below_floor: str | None = None  # why an n_ctx below the floor was measured anyway
    # What came out
    status: str | None = None  # ok, pruned, over_budget_predicted, reused, interrupted, oom...
    reason: str | None = None
    wall_s: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # TrialMetrics.to_dict(); {}: none
    gpu: dict[str, Any] | None = None  # objectives.nvml.GpuReading
    llama_buffers: dict[str, Any] | None = None  # objectives.llama_buffers.parse_buffers
    watch: dict[str, Any] | None = None  # a pruned trial's first answer (objectives.launch.Watch)
    returncode: int | None = None
    phase: str | None = None  # the last phase a failed child reached
    stderr_tail: str | None = None
    vram_prediction_error_pct: float | None = None
    vram_unmeasured: str | None = None  # why it is over budget without a VRAM reading
    spill: str | None = None  # why it is a suspected spill (tuner/study/_spill.py)
    confirmed: bool = False  # a copy carrying confirmed figures (tuner/study/_confirm.py)

    @classmethod
    def from_frozen(cls, t: FrozenTrial) -> TrialRecord:
        return cls._read(t.number, t.state, t.params, t.user_attrs, t.system_attrs)

    @classmethod
    def from_running(cls, trial: optuna.Trial) -> TrialRecord:
        """The record so far of the trial the objective runs (what it was enqueued with...)."""
        return cls._read(trial.number, TrialState.RUNNING, trial.params, trial.user_attrs, {})

    @classmethod
    def _read(
        cls,
        number: int,
        state: TrialState,
        params: Mapping[str, Any],
        a: Mapping[str, Any],
        system: Mapping[str, Any],
    ) -> TrialRecord:
        predicted = _dict(a.get("vram_predicted"))
        return cls(
            number=number,
            state=state,
            params=dict(params),
            baseline=_str(a.get("baseline")),
            start=_str(a.get("start")),
            app_n_ctx=_int(a.get("app_n_ctx")),
            retry_of=_int(a.get("retry_of")),
            retry_reason=_str(a.get("retry_reason")),
            failed_trial=_int(system.get(_FAILED_TRIAL)),
            owner=_dict(a.get("owner")),
            cpu_cores=_str(a.get("cpu_cores")),
            llama_kwargs=_dict(a.get("llama_kwargs")),
            key=_str(a.get("key")),
            reused_from=_int(a.get("reused_from")),
            vram_predicted_mb=_float(a.get("vram_predicted_mb")),
            vram_predicted=None if predicted is None else _floats(predicted),
            below_floor=_str(a.get("below_floor")),
            status=_str(a.get("status")),
            reason=_str(a.get("reason")),
            wall_s=_float(a.get("wall_s")),
            metrics=_dict(a.get("metrics")) or {},
            gpu=_dict(a.get("gpu")),
            llama_buffers=_dict(a.get("llama_buffers")),
            watch=_dict(a.get("watch")),
            returncode=_int(a.get("returncode")),
            phase=_str(a.get("phase")),
            stderr_tail=_str(a.get("stderr_tail")),
            vram_prediction_error_pct=_float(a.get("vram_prediction_error_pct")),
            vram_unmeasured=_str(a.get(UNMEASURED_ATTR)),
            spill=_str(a.get(SPILL_ATTR)),
            confirmed=a.get("confirmed") is True,
        )

    @property
    def settings(self) -> dict[str, Any]:
        """The settings passed to Llama(...): the normalized `llama_kwargs`, else the params."""
        return dict(self.llama_kwargs if self.llama_kwargs is not None else self.params)

    @property
    def outcome(self) -> str:
        """dm-tune's status, else Optuna's state (a trial that is still running...)."""
        return self.status or self.state.name.lower()

    @property
    def role(self) -> tuple[str, str]:
        """(`baseline` | `start` | `sampled`, the profile or start point's name or "")."""
        if self.baseline is not None:
            return "baseline", self.baseline
        if self.start is not None:
            return "start", self.start
        return "sampled", ""

    @property
    def vram_mb(self) -> float | None:
        """The measured peak VRAM (metrics), None without a reading."""
        return _float(self.metrics.get("vram_mb"))

    @property
    def partial_figures(self) -> tuple[float, float] | None:
        """(tok/s, first-token ms) a pruned trial's first answer showed when it was stopped,
        or None when it was stopped before its first token or recorded no watch."""
        w = self.watch or {}
        tokens, ttft_s, gen_s = (
            _float(w.get("tokens")),
            _float(w.get("ttft_s")),
            _float(w.get("gen_s")),
        )
        if tokens is None or ttft_s is None or gen_s is None:
            return None
        watch = Watch(None, 0.0, int(tokens), ttft_s, gen_s, None)
        return None if watch.gen_tok_s is None else (watch.gen_tok_s, ttft_s * 1000)


def objective_values(metrics: dict[str, Any], latency: str) -> list[float]:
    lat = metrics.get("warm_ttft_ms") if latency == "warm" else metrics["ttft_ms"]
    return [float(metrics["gen_tok_s"]), float(lat if lat is not None else metrics["ttft_ms"])]


# Short readers of one field, for the report and the trial list.
def settings_of(t: FrozenTrial) -> dict[str, Any]:
    return TrialRecord.from_frozen(t).settings


def metrics_of(t: FrozenTrial) -> dict[str, Any]:
    return TrialRecord.from_frozen(t).metrics


def status_of(t: FrozenTrial) -> str:
    return TrialRecord.from_frozen(t).outcome


def role_of(t: FrozenTrial) -> tuple[str, str]:
    return TrialRecord.from_frozen(t).role


def vram_predicted_mb(t: FrozenTrial) -> float | None:
    return TrialRecord.from_frozen(t).vram_predicted_mb


def partial_figures(t: FrozenTrial) -> tuple[float, float] | None:
    return TrialRecord.from_frozen(t).partial_figures


# Writers, in the order a trial meets them.
def enqueue(
    study: optuna.Study,
    params: dict[str, Any],
    role: Mapping[str, str] | None = None,
    *,
    app_n_ctx: int | None = None,
    retry_of: int | None = None,
    retry_reason: str | None = None,
) -> None:
    """A trial to run before sampling: `role` is {"baseline": name} or {"start": name}
    (tuner.space.starting_trials)."""
    role = role or {}
    if not set(role) <= set(ROLE_ATTRS):
        raise ValueError(f"a trial's role is one of {ROLE_ATTRS}, not {sorted(role)}")
    attrs: dict[str, Any] = {}
    if retry_of is not None:
        attrs["retry_of"] = retry_of
    attrs.update(role)
    if app_n_ctx is not None:
        attrs["app_n_ctx"] = app_n_ctx
    if retry_reason:
        attrs["retry_reason"] = retry_reason
    study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)


def enqueue_retry(study: optuna.Study, t: FrozenTrial, note: str | None = None) -> None:
    """Run `t`'s settings again, under its name (an interrupted or stale trial)."""
    r = TrialRecord.from_frozen(t)
    role = {} if r.role[0] == "sampled" else dict([r.role])
    # an enqueued trial stopped before all its settings were asked for holds only some in
    # `params`: the rest are in Optuna's `fixed_params` (a baseline keeps its own settings)
    params = {**t.system_attrs.get("fixed_params", {}), **t.params}
    enqueue(study, params, role, app_n_ctx=r.app_n_ctx, retry_of=t.number, retry_reason=note)


def mark_interrupted(study: optuna.Study, t: FrozenTrial, reason: str) -> bool:
    """Fail a RUNNING trial that nobody will finish, as interrupted (so it is re-run); False
    when another run finished it first."""
    storage = study._storage
    try:  # the attributes first: a finished trial can't take them
        storage.set_trial_user_attr(t._trial_id, "status", "interrupted")
        storage.set_trial_user_attr(t._trial_id, "reason", reason)
        return storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def record_owner(trial: optuna.Trial) -> None:
    """The run that runs the trial: a resume knows if its run is gone. A `--gpus` worker
    also records its share of the cores (the trial's n_threads ran on those)."""
    trial.set_user_attr("owner", this_process())
    cores = os.environ.get(WORKER_CORES_ENV)
    if cores is not None:
        record_cpu_cores(trial, cores)


def record_cpu_cores(trial: optuna.Trial, cores: str) -> None:
    trial.set_user_attr("cpu_cores", cores)


def record_not_needed(trial: optuna.Trial, status: str, reason: str) -> None:
    """A trial ended before anything was measured: `surplus` or `duplicate` (tuner/study/_share.py);
    it fails, so that no front, count or sampler takes it."""
    record_outcome(trial, status, reason)


def record_settings(trial: optuna.Trial, params: dict[str, Any], key: str) -> None:
    trial.set_user_attr("llama_kwargs", params)
    trial.set_user_attr("key", key)


def record_outcome(trial: optuna.Trial, status: str | None, reason: str) -> None:
    """Why a trial ended without a child's result (skipped, interrupted...)."""
    if status is not None:
        trial.set_user_attr("status", status)
    trial.set_user_attr("reason", reason)


def record_reuse(trial: optuna.Trial, prev: FrozenTrial) -> str:
    """`trial` has the same settings as `prev`: it takes `prev`'s figures and constraints when
    `prev` completed, else its failure. The reason it gives."""
    trial.set_user_attr("reused_from", prev.number)
    if prev.state == TrialState.COMPLETE and prev.values is not None:
        reason = f"same settings as trial {prev.number}"
        record_outcome(trial, "reused", reason)
        for k in _REUSED:
            if k in prev.user_attrs:
                trial.set_user_attr(k, prev.user_attrs[k])
        copy_constraints(trial, prev)
        return reason
    for k in _REUSED_FAILURE:
        if k in prev.user_attrs:
            trial.set_user_attr(k, prev.user_attrs[k])
    reason = f"same settings as trial {prev.number}: {prev.user_attrs.get('reason', '')}"
    record_outcome(trial, None, reason)
    return reason


def record_prediction(trial: optuna.Trial, pred: VramPrediction) -> None:
    trial.set_user_attr("vram_predicted_mb", round(pred.total_mb, 1))
    trial.set_user_attr("vram_predicted", pred.to_dict())


def record_below_floor(trial: optuna.Trial, why: str) -> None:
    trial.set_user_attr("below_floor", why)


def record_child(trial: optuna.Trial, res: ChildResult) -> None:
    trial.set_user_attr("status", res.status)
    trial.set_user_attr("reason", res.reason)
    trial.set_user_attr("wall_s", round(res.wall_s, 3))
    if res.metrics is not None:
        trial.set_user_attr("metrics", res.metrics.to_dict())
    gpu = {k: v for k, v in asdict(res.gpu).items() if v is not None}
    if gpu:
        trial.set_user_attr("gpu", gpu)
    if res.status not in ("ok", "pruned"):
        trial.set_user_attr("returncode", res.returncode)
        trial.set_user_attr("phase", res.phase)
        trial.set_user_attr("stderr_tail", res.stderr_tail[-2000:])


def record_buffers(trial: optuna.Trial, buffers: dict[str, Any]) -> None:
    trial.set_user_attr("llama_buffers", buffers)


def record_watch(trial: optuna.Trial, watch: dict[str, Any]) -> None:
    trial.set_user_attr("watch", watch)


def record_prediction_error(trial: optuna.Trial, pct: float) -> None:
    trial.set_user_attr("vram_prediction_error_pct", pct)


def record_unmeasured(trial: optuna.Trial, why: str) -> None:
    trial.set_user_attr(UNMEASURED_ATTR, why)


def record_spill(trial: optuna.Trial, why: str) -> None:
    trial.set_user_attr(SPILL_ATTR, why)


# Copies with figures the storage does not hold (a finished trial can't be changed).
def with_spill(t: FrozenTrial, why: str, over_budget_mb: float) -> FrozenTrial:
    """`t` marked as a suspected spill: its reason, and its VRAM constraint violated."""
    t2 = with_vram_constraint(t, over_budget_mb)
    t2.user_attrs = {**t.user_attrs, SPILL_ATTR: why}
    return t2


def with_confirmation(
    t: FrozenTrial, values: list[float], metrics: dict[str, Any], over_budget_mb: float
) -> FrozenTrial:
    """`t` with the confirmed figures in place of the study's."""
    t2 = with_vram_constraint(t, over_budget_mb)
    t2.values = list(values)
    t2.user_attrs = {**t.user_attrs, "metrics": metrics, "confirmed": True}
    return t2


def made_trial(
    number: int,
    settings: dict[str, Any],
    values: list[float] | None,
    constraints: dict[str, float],
) -> FrozenTrial:
    """A finished trial as the study records one (the benchmark replays' stand-in)."""
    t = optuna.trial.create_trial(
        values=values,
        state=TrialState.COMPLETE if values is not None else TrialState.FAIL,
        user_attrs={"llama_kwargs": settings},
        constraints=constraints,
    )
    t.number = number
    return t
