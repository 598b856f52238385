"""`dm-tune doctor`: check the machine, the llama-cpp-python build and (optionally) a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def doctor(
    model: Annotated[Path | None, typer.Option("--model", help="GGUF file to describe")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Show GPUs, whether llama-cpp-python can offload to them (and how to fix it if not),
    CPU and RAM, and for --model its layers and predicted VRAM."""
    from tuner.machine import collect, render

    report = collect(model)
    typer.echo(json.dumps(report, indent=2) if json_out else render(report))
