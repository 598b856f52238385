"""`dm-tune trials`: every trial and confirmation run of a study, one row each."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._options import StorageOption, StudyOption
from tuner.study import DEFAULT_STORAGE


def trials(
    storage: StorageOption = DEFAULT_STORAGE,
    study: StudyOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json | md")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: print)")
    ] = None,
) -> None:
    """List one row per trial and per confirmation run: role, state and reason, settings,
    tok/s, cold and warm first-token latency, VRAM (measured, predicted, its source)."""
    from tuner.errors import UserError
    from tuner.report import FORMATS, check_output, format_rows, trial_rows, write_output
    from tuner.study import load_dm_tune_study

    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    if output is not None:
        check_output(output)
    text = format_rows(trial_rows(load_dm_tune_study(storage, study)), fmt)
    if output is None:
        typer.echo(text, nl=False)
        return
    write_output(output, text)
    typer.echo(f"Trials written: {output}")
