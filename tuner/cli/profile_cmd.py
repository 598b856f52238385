"""`dm-tune profile ...`: look at a profile the way Desktop-Mate will use it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tuner.cli._options import ProfileArgument
from tuner.errors import UserError
from tuner.profile import ProfileError, select_tier

app = typer.Typer(
    help="Read a Desktop-Mate profile exported by dm-tune: which tier this machine would load.",
    no_args_is_help=True,
)


@app.command("select")
def select(
    path: ProfileArgument,
    free_vram: Annotated[
        float | None,
        typer.Option("--free-vram", help="Free VRAM in MB (default: read from NVML; 0 = no GPU)"),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="GGUF the app loads; refused if the profile is for another"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Use the profile even for another model file")
    ] = False,
) -> None:
    """Print, as JSON, the tier and the Llama(...) keys the app would load on this machine."""
    try:
        tier = select_tier(path, free_vram, model_path=model, force=force)
    except ProfileError as exc:
        raise UserError(str(exc)) from None
    typer.echo(json.dumps({"tier": tier.name, "llama": tier.llama.kwargs()}, indent=2))
