"""`dm-tune export`: write the best settings of a study as Desktop-Mate's profile YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._options import (
    RUN_DEFAULTS,
    ConfirmRunsOption,
    ProfileDirOption,
    StorageOption,
    StudyOption,
    prefer_option,
)
from tuner.paths import DEFAULT_PROFILE_DIR
from tuner.profile import Prefer
from tuner.study import DEFAULT_STORAGE


def export(
    storage: StorageOption = DEFAULT_STORAGE,
    study: StudyOption = None,
    prefer: Annotated[
        Prefer, prefer_option("Rule among Pareto-optimal trials: throughput|latency|balanced")
    ] = Prefer.BALANCED,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Profile path to write")
    ] = None,
    profile_dir: ProfileDirOption = DEFAULT_PROFILE_DIR,
    confirm_k: Annotated[
        int,
        typer.Option(
            "--confirm", help="Re-measure this many top candidates first (needs the model file)"
        ),
    ] = 0,
    confirm_runs: ConfirmRunsOption = RUN_DEFAULTS.confirm_runs,
    timeout: Annotated[
        float, typer.Option("--trial-timeout", help="Seconds per re-measurement")
    ] = RUN_DEFAULTS.trial_timeout_s,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait", help="With --confirm: exit (code 2) instead of waiting for another run"
        ),
    ] = False,
) -> None:
    """Export the best feasible trial (and lower-VRAM tiers) to configs/profiles/<study>.yaml.
    With --confirm it measures, so it holds the machine's measurement lock; without, it only
    reads and runs next to anything."""
    from contextlib import ExitStack, nullcontext

    from tuner.errors import UserError
    from tuner.machine import measurement_lock
    from tuner.profile.export import export_profile
    from tuner.study import check_study_name, load_existing_study

    if confirm_k < 0 or confirm_runs < 1:
        raise UserError("--confirm must be 0 or more and --confirm-runs at least 1")
    if confirm_k:  # the re-measurements are recorded in the study: it must be writable
        from tuner.study import check_storage

        check_storage(storage)
    s = load_existing_study(storage, study)
    if output is None:  # the study's name becomes the file name
        check_study_name(s.study_name)
    lock = (
        measurement_lock(
            "dm-tune export", f"study '{s.study_name}'", wait=not no_wait, echo=typer.echo
        )
        if confirm_k
        else nullcontext()
    )
    with lock, ExitStack() as stack:
        how = None
        if confirm_k:
            from optuna.exceptions import StorageInternalError

            from objectives.launch import trial_launcher
            from tuner.study import Remeasure, StudyRecord, confirm, storage_failure

            record = StudyRecord.from_study(s)
            model = Path((record.model or {}).get("path", ""))
            workload = record.confirm_spec or record.workload_spec
            if not model.is_file() or workload is None:
                raise UserError(
                    f"cannot re-measure: the model file {model} is gone or the study has no "
                    "workload; export without --confirm"
                )
            how = Remeasure(
                runs=confirm_runs,
                timeout_s=timeout,
                model_path=model,
                workload=workload,
                launcher=stack.enter_context(trial_launcher()),  # pre-warmed trial children
            )
            try:
                confirm(s, prefer=prefer, k=confirm_k, how=how, echo=lambda line: typer.echo(line))
            except StorageInternalError as exc:
                raise storage_failure(exc, storage) from None
        export_profile(
            s,
            prefer=prefer,
            out_dir=profile_dir,
            storage=storage,
            output=output,
            remeasure=how,
            echo=lambda line: typer.echo(line),
        )
    from tuner.cli._inspect_hint import inspect_commands

    for line in inspect_commands(storage, s.study_name):
        typer.echo(f"Inspect: {line}")
