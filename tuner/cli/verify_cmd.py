"""`dm-tune verify`: re-measure a profile's tiers on this machine; exit 1 when one fails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._options import (
    DEFAULT_WORKLOAD,
    NoWaitOption,
    ProfileArgument,
    ProfileModelOption,
)
from tuner.profile.verify import RUN_TIMEOUT_S, RUNS, TOLERANCE


def verify(
    path: ProfileArgument,
    model: ProfileModelOption = None,
    runs: Annotated[int, typer.Option("--runs", help="Fresh processes per tier")] = RUNS,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Allowed tok/s drop below the recorded median")
    ] = TOLERANCE,
    repeats: Annotated[
        int | None, typer.Option("--repeats", help="Measured answers per run (default: workload)")
    ] = None,
    workload: Annotated[
        Path, typer.Option("--workload", help="The workload the study used")
    ] = DEFAULT_WORKLOAD,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per run")] = RUN_TIMEOUT_S,
    no_wait: NoWaitOption = False,
    tier: Annotated[
        list[str] | None,
        typer.Option("--tier", help="Verify only this tier (repeatable; `default`: the default)"),
    ] = None,
) -> None:
    """Measure every tier that fits this machine's free VRAM again (N fresh processes each) and
    check its VRAM against min_vram_free_mb and its tok/s against the recorded median."""
    from tuner.profile.verify import render, verify_profile

    report = verify_profile(
        path,
        model=model,
        runs=runs,
        tolerance=tolerance,
        repeats=repeats,
        workload=workload,
        timeout_s=timeout,
        wait=not no_wait,
        echo=lambda line: typer.echo(line),
        tiers=tuple(tier or ()),
    )
    typer.echo(render(report))
    if not report.passed:
        raise typer.Exit(1)
