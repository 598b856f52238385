"""`dm-tune run`: tune llama-cpp-python settings for a model on this machine."""

from __future__ import annotations

from pathlib import Path

import typer

from tuner.paths import default_config
from tuner.study import DEFAULT_STORAGE, RunSettings
from tuner.units import parse_size_mb

SPACE = default_config("search_space.yaml")
WORKLOAD = default_config("workload.yaml")
BASELINES = default_config("baselines.yaml")


def run(
    model: Path | None = typer.Option(
        None, "--model", "-m", help="GGUF model file (default: the SmolLM2-135M demo model)"
    ),
    trials: int = typer.Option(50, "--trials", "-n", help="Total trials the study should hold"),
    vram_budget: str = typer.Option(
        "6GB",
        "--vram-budget",
        help="VRAM the LLM may use on the target card, e.g. 6GB, 5000MB (docs/desktop-mate.md)",
    ),
    min_ctx: str | None = typer.Option(
        None,
        "--min-ctx",
        help="Context floor: N tokens, or 'worst' (every kept reply at max_tokens); default: "
        "the smallest n_ctx choice that holds the app's steady-state turn",
    ),
    storage: str = typer.Option(
        DEFAULT_STORAGE, "--storage", help="SQLAlchemy URL of the study DB"
    ),
    study: str | None = typer.Option(None, "--study", help="Study name (default: model+hardware)"),
    search_space: Path = typer.Option(SPACE, "--search-space", help="Search space YAML"),
    workload: Path = typer.Option(WORKLOAD, "--workload", help="Workload YAML (the chat turn)"),
    baselines: Path = typer.Option(BASELINES, "--baselines", help="Baseline profiles YAML"),
    no_baselines: bool = typer.Option(False, "--no-baselines", help="Don't measure app profiles"),
    trial_timeout: float = typer.Option(600.0, "--trial-timeout", help="Seconds per trial"),
    latency: str = typer.Option("cold", "--latency", help="Latency objective: cold | warm"),
    prefer: str = typer.Option(
        "balanced", "--prefer", help="Export rule: throughput | latency | balanced"
    ),
    repeats: int | None = typer.Option(None, "--repeats", help="Measured answers per trial"),
    seed: int | None = typer.Option(None, "--seed", help="Sampler seed (reproducible search)"),
    export: bool = typer.Option(True, "--export/--no-export", help="Write the profile at the end"),
    confirm: int = typer.Option(
        3, "--confirm", help="Re-measure this many top candidates before export (0: off)"
    ),
    confirm_runs: int = typer.Option(2, "--confirm-runs", help="Fresh processes per candidate"),
    prune: bool = typer.Option(
        True, "--prune/--no-prune", help="Stop trials already dominated after their first answer"
    ),
    profile_dir: Path = typer.Option(Path("configs/profiles"), "--profile-dir"),
    no_wait: bool = typer.Option(
        False, "--no-wait", help="Exit (code 2) instead of waiting when another run measures here"
    ),
) -> None:
    """Run (or resume) a study: each trial loads the model with candidate settings and measures
    tok/s, first-token latency and VRAM; the best settings within the budget are exported."""
    from optuna.exceptions import StorageInternalError

    from tuner.study import storage_failure, tune

    settings = RunSettings(
        model=model,
        trials=trials,
        vram_budget_mb=parse_size_mb(vram_budget),
        min_ctx=min_ctx,
        storage=storage,
        study_name=study,
        search_space=search_space,
        workload=workload,
        baselines=None if no_baselines else baselines,
        trial_timeout_s=trial_timeout,
        latency=latency,
        prefer=prefer,
        repeats=repeats,
        seed=seed,
        export=export,
        prune=prune,
        confirm_k=confirm,
        confirm_runs=confirm_runs,
        profile_dir=profile_dir,
        wait_for_lock=not no_wait,
    )
    try:
        summary = tune(settings, echo=lambda s: typer.echo(s))
    except StorageInternalError as exc:  # e.g. the database's disk filled up mid-run
        raise storage_failure(exc, storage) from None
    if summary.interrupted:
        raise typer.Exit(summary.exit_code or 130)
    from tuner.cli._inspect_hint import inspect_commands

    for line in inspect_commands(summary.storage, summary.study_name):
        typer.echo(f"Inspect: {line}")
