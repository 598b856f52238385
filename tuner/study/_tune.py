"""`dm-tune run` as a library call: prepare, run the study, summarize, export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from objectives.launch import Launcher, trial_launcher
from tuner.echo import Echo
from tuner.machine import measurement_lock, relabel
from tuner.study._lifeline import stop_when_parent_gone
from tuner.study._prepare import Context, check_options, prepare
from tuner.study._settings import RunSettings
from tuner.study._share import counted_trials
from tuner.study._storage import display_url
from tuner.study._study import run_study
from tuner.study._summary import render_summary
from tuner.study._workers import trials_only


@dataclass(frozen=True)
class TuneSummary:
    study_name: str
    storage: str
    ran: int
    total: int
    interrupted: bool
    profile: Path | None
    exit_code: int = 0  # 130 after Ctrl-C, 143 after SIGTERM


def tune(settings: RunSettings, echo: Echo = print) -> TuneSummary:
    """Everything under the machine's measurement lock (tuner/machine/_measure_lock.py), taken
    once the options are checked: the build probe measures too, and `--no-wait` must refuse before
    anything is written. A worker of `--gpus` stops as after Ctrl-C once its parent is gone."""
    check_options(settings)
    with stop_when_parent_gone() as lifeline:
        echo = lifeline.guard(echo)
        with measurement_lock(
            "dm-tune run",
            f"study '{settings.study_name}'" if settings.study_name else "",
            wait=settings.wait_for_lock,
            echo=echo,
        ):
            return _tune(settings, echo)


def _tune(settings: RunSettings, echo: Echo) -> TuneSummary:
    ctx = prepare(settings, echo)
    relabel(f"study '{ctx.study_name}'")
    for notice in ctx.space.notices:
        echo(f"note: {notice}")
    # The study's trials and the confirmation's re-measurements: pre-warmed children.
    with trial_launcher(settings.child_argv) as launcher:
        return _study_and_export(ctx, settings, launcher, echo)


def _study_and_export(
    ctx: Context, settings: RunSettings, launcher: Launcher, echo: Echo
) -> TuneSummary:
    where = f"{display_url(settings.storage)} (study '{ctx.study_name}')"
    echo(f"Study: {where}")
    result = run_study(ctx, launcher, echo)
    trials = result.study.get_trials(deepcopy=False)
    if result.interrupted:
        echo(
            f"Interrupted. {len(counted_trials(trials))} finished trials are kept in "
            f"{where}. Run the same command again to resume."
        )
        return TuneSummary(
            ctx.study_name, settings.storage, result.ran, len(trials), True, None, result.exit_code
        )
    if not trials_only():
        echo(render_summary(trials, settings.prefer, ctx.floor))
    profile = None
    if settings.export:
        from tuner.profile.export import export_profile
        from tuner.study._confirm import Remeasure, confirm

        how = None
        if settings.confirm_k > 0:
            how = Remeasure(
                runs=settings.confirm_runs,
                timeout_s=settings.trial_timeout_s,
                model_path=ctx.model.path,
                workload=ctx.confirm_spec(),
                launcher=launcher,
            )
            echo(
                f"Confirming the top {settings.confirm_k} candidates "
                f"({settings.confirm_runs} fresh processes each):"
            )
            confirm(result.study, prefer=settings.prefer, k=settings.confirm_k, how=how, echo=echo)
        profile = export_profile(
            result.study,
            prefer=settings.prefer,
            out_dir=settings.profile_dir,
            storage=settings.storage,
            remeasure=how,
            echo=echo,
        )
    return TuneSummary(ctx.study_name, settings.storage, result.ran, len(trials), False, profile)
