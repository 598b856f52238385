"""`dm-tune export`: write the best settings of a study as Desktop-Mate's profile YAML."""

from __future__ import annotations

from pathlib import Path

import typer

from tuner.study import DEFAULT_STORAGE, PREFER_CHOICES


def export(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help="SQLAlchemy URL of the study"),
    study: str | None = typer.Option(None, "--study", help="Study name (default: the only one)"),
    prefer: str = typer.Option(
        "balanced", "--prefer", help="Rule among Pareto-optimal trials: throughput|latency|balanced"
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Profile path to write"),
    profile_dir: Path = typer.Option(Path("configs/profiles"), "--profile-dir"),
    confirm_k: int = typer.Option(
        0, "--confirm", help="Re-measure this many top candidates first (needs the model file)"
    ),
    confirm_runs: int = typer.Option(2, "--confirm-runs", help="Fresh processes per candidate"),
    timeout: float = typer.Option(600.0, "--trial-timeout", help="Seconds per re-measurement"),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="With --confirm: exit (code 2) instead of waiting for another run"
    ),
) -> None:
    """Export the best feasible trial (and lower-VRAM tiers) to configs/profiles/<study>.yaml.
    With --confirm it measures, so it holds the machine's measurement lock; without, it only
    reads and runs next to anything."""
    from contextlib import ExitStack, nullcontext

    from tuner.errors import UserError
    from tuner.machine import measurement_lock
    from tuner.profile.export import export_profile
    from tuner.study import check_study_name, load_existing_study

    if prefer not in PREFER_CHOICES:
        raise UserError(f"--prefer must be one of {', '.join(PREFER_CHOICES)} (got {prefer!r})")
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
