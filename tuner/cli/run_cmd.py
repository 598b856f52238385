"""`dm-tune run`: tune llama-cpp-python settings for a model on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._options import RUN_DEFAULTS as D
from tuner.cli._options import ConfirmRunsOption, ProfileDirOption, prefer_option
from tuner.profile import Prefer
from tuner.study import RunSettings
from tuner.units import parse_size_mb

DEFAULT_VRAM_BUDGET = f"{D.vram_budget_mb / 1024:g}GB"  # as the user writes it: 6GB


def run(
    ctx: typer.Context,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", "-m", help="GGUF model file (default: the SmolLM2-135M demo model)"
        ),
    ] = D.model,
    trials: Annotated[
        int, typer.Option("--trials", "-n", help="Total trials the study should hold")
    ] = D.trials,
    vram_budget: Annotated[
        str,
        typer.Option(
            "--vram-budget",
            help="VRAM the LLM may use on the target card, e.g. 6GB, 5000MB (docs/desktop-mate.md)",
        ),
    ] = DEFAULT_VRAM_BUDGET,
    min_ctx: Annotated[
        str | None,
        typer.Option(
            "--min-ctx",
            help="Context floor: N tokens, or 'worst' (every kept reply at max_tokens); "
            "default: the smallest n_ctx choice that holds the app's steady-state turn",
        ),
    ] = D.min_ctx,
    storage: Annotated[
        str, typer.Option("--storage", help="SQLAlchemy URL of the study DB")
    ] = D.storage,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: model+hardware)")
    ] = D.study_name,
    search_space: Annotated[
        Path, typer.Option("--search-space", help="Search space YAML")
    ] = D.search_space,
    workload: Annotated[
        Path, typer.Option("--workload", help="Workload YAML (the chat turn)")
    ] = D.workload,
    baselines: Annotated[
        Path | None, typer.Option("--baselines", help="Baseline profiles YAML")
    ] = D.baselines,
    no_baselines: Annotated[
        bool, typer.Option("--no-baselines", help="Don't measure app profiles")
    ] = False,
    trial_timeout: Annotated[
        float, typer.Option("--trial-timeout", help="Seconds per trial")
    ] = D.trial_timeout_s,
    latency: Annotated[
        str, typer.Option("--latency", help="Latency objective: cold | warm")
    ] = D.latency,
    prefer: Annotated[
        Prefer, prefer_option("Export rule: throughput | latency | balanced")
    ] = D.prefer,
    repeats: Annotated[
        int | None, typer.Option("--repeats", help="Measured answers per trial")
    ] = D.repeats,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Sampler seed (reproducible search)")
    ] = D.seed,
    export: Annotated[
        bool, typer.Option("--export/--no-export", help="Write the profile at the end")
    ] = D.export,
    confirm: Annotated[
        int,
        typer.Option(
            "--confirm", help="Re-measure this many top candidates before export (0: off)"
        ),
    ] = D.confirm_k,
    confirm_runs: ConfirmRunsOption = D.confirm_runs,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune/--no-prune", help="Stop trials already dominated after their first answer"
        ),
    ] = D.prune,
    profile_dir: ProfileDirOption = D.profile_dir,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Exit (code 2) instead of waiting when another run measures here",
        ),
    ] = not D.wait_for_lock,
    gpus: Annotated[
        str | None,
        typer.Option(
            "--gpus",
            help="One worker per GPU on the same study, e.g. 0,1 (NVML indices; "
            "the CPU cores are split between them; docs/scaling.md)",
        ),
    ] = None,
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
    if gpus is not None:
        _run_workers(gpus, settings, ctx)
    try:
        summary = tune(settings, echo=lambda s: typer.echo(s))
    except StorageInternalError as exc:  # e.g. the database's disk filled up mid-run
        raise storage_failure(exc, storage) from None
    if summary.interrupted:
        raise typer.Exit(summary.exit_code or 130)
    from tuner.cli._inspect_hint import inspect_commands
    from tuner.study import trials_only

    if trials_only():  # a --gpus worker: the run after the workers prints these
        return
    for line in inspect_commands(summary.storage, summary.study_name):
        typer.echo(f"Inspect: {line}")


def _run_workers(gpus: str, settings: RunSettings, ctx: typer.Context) -> None:
    """`--gpus`: the workers are this same command without `--gpus`, one per GPU."""
    from tuner.study import check_options, run_on_gpus

    check_options(settings)  # a bad option fails here once, not once per worker
    code = run_on_gpus(
        gpus, _given_args(ctx), wait=settings.wait_for_lock, echo=lambda s: typer.echo(s)
    )
    raise typer.Exit(code)


def _given_args(ctx: typer.Context) -> list[str]:
    """The options the user gave this command, as arguments again (not sys.argv: the same
    whether dm-tune, python -m tuner.cli or a test's CliRunner ran it)."""
    args: list[str] = []
    for p in ctx.command.params:
        opts = getattr(p, "opts", None)
        if p.name is None or not opts or p.name == "gpus":
            continue
        source = ctx.get_parameter_source(p.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[p.name]
        if getattr(p, "is_flag", False):
            off = getattr(p, "secondary_opts", [])
            args.append(opts[0] if value or not off else off[0])
        else:
            args += [opts[0], str(getattr(value, "value", value))]
    return args
