"""`dm-tune export`: write the best settings of a study as Desktop-Mate's profile YAML."""

from __future__ import annotations

from pathlib import Path

import typer

from tuner.selection import PREFER_CHOICES
from tuner.storage import DEFAULT_STORAGE


def export(
    storage: str = typer.Option(
        DEFAULT_STORAGE, "--storage", help="SQLAlchemy URL of the study DB"
    ),
    study: str | None = typer.Option(None, "--study", help="Study name (default: the only one)"),
    prefer: str = typer.Option(
        "balanced",
        "--prefer",
        help="Pick among Pareto-optimal trials: throughput | latency | balanced",
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Profile path to write"),
    profile_dir: Path = typer.Option(Path("configs/profiles"), "--profile-dir"),
) -> None:
    """Export the best feasible trial (and lower-VRAM tiers) to configs/profiles/<study>.yaml."""
    from tuner.errors import UserError
    from tuner.export import export_profile
    from tuner.study_lookup import load_existing_study

    if prefer not in PREFER_CHOICES:
        raise UserError(f"--prefer must be one of {', '.join(PREFER_CHOICES)} (got {prefer!r})")
    s = load_existing_study(storage, study)
    export_profile(
        s,
        prefer=prefer,
        out_dir=profile_dir,
        storage=storage,
        output=output,
        echo=lambda line: typer.echo(line),
    )
