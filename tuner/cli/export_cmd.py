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
    from tuner.cli._inspect_hint import inspect_commands
    from tuner.profile.export import export_study

    exported = export_study(
        storage,
        study,
        prefer=prefer,
        out_dir=profile_dir,
        output=output,
        confirm_k=confirm_k,
        confirm_runs=confirm_runs,
        timeout_s=timeout,
        wait=not no_wait,
        echo=lambda line: typer.echo(line),
    )
    for line in inspect_commands(storage, exported.study_name):
        typer.echo(f"Inspect: {line}")
