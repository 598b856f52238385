"""`dm-tune report`: one self-contained HTML page answering how the study went."""

from __future__ import annotations

from pathlib import Path

import typer

from tuner.study import DEFAULT_STORAGE, PREFER_CHOICES


def report(
    storage: str = typer.Option(DEFAULT_STORAGE, "--storage", help="SQLAlchemy URL of the study"),
    study: str | None = typer.Option(None, "--study", help="Study name (default: the only one)"),
    profile: Path | None = typer.Option(
        None, "--profile", help="Exported profile to compare with (default: the study's tiers)"
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="HTML file to write (default: ./<study>-report.html)"
    ),
    prefer: str = typer.Option(
        "balanced", "--prefer", help="Rule that picks the chosen trial: throughput|latency|balanced"
    ),
) -> None:
    """Write the study as one HTML file (plotly inlined, works offline): the app's profiles
    against the exported tiers, tok/s against first-token latency with the Pareto front, GPU
    layers and VRAM, history and parameter importances, the bandwidth limit, failures and
    provenance. Only reads the study."""
    from tuner.errors import UserError
    from tuner.report import check_output, write_report
    from tuner.study import check_study_name, load_dm_tune_study

    if prefer not in PREFER_CHOICES:
        raise UserError(f"--prefer must be one of {', '.join(PREFER_CHOICES)} (got {prefer!r})")
    if output is not None:
        check_output(output)  # before the study is read
    s = load_dm_tune_study(storage, study)
    path = output or Path(f"{check_study_name(s.study_name)}-report.html")
    write_report(s, storage=storage, output=path, prefer=prefer, profile_path=profile)
    typer.echo(
        f"Report written: {path} ({path.stat().st_size / 2**20:.1f} MB, open it in a browser)"
    )
