"""`dm-tune report`: one self-contained HTML page answering how the study went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._options import StorageOption, StudyOption, prefer_option
from tuner.profile import Prefer
from tuner.study import DEFAULT_STORAGE


def report(
    storage: StorageOption = DEFAULT_STORAGE,
    study: StudyOption = None,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile", help="Exported profile to compare with (default: the study's tiers)"
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="HTML file to write (default: ./<study>-report.html)"),
    ] = None,
    prefer: Annotated[
        Prefer,
        prefer_option("Rule that picks the chosen trial: throughput|latency|balanced"),
    ] = Prefer.BALANCED,
) -> None:
    """Write the study as one HTML file (plotly inlined, works offline): the app's profiles
    against the exported tiers, tok/s against first-token latency with the Pareto front, GPU
    layers and VRAM, history and parameter importances, the bandwidth limit, failures and
    provenance. Only reads the study."""
    from tuner.report import check_output, write_report
    from tuner.study import check_study_name, load_dm_tune_study

    if output is not None:
        check_output(output)  # before the study is read
    s = load_dm_tune_study(storage, study)
    path = output or Path(f"{check_study_name(s.study_name)}-report.html")
    write_report(s, storage=storage, output=path, prefer=prefer, profile_path=profile)
    typer.echo(
        f"Report written: {path} ({path.stat().st_size / 2**20:.1f} MB, open it in a browser)"
    )
