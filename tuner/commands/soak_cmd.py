"""`dm-tune soak`: a long chat with one tier of a profile; exit 1 on a leak or an overflow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuner.paths import default_config

DEFAULT_WORKLOAD = default_config("workload.yaml")


def soak(
    path: Annotated[Path, typer.Argument(help="Profile YAML written by `dm-tune export`")],
    messages: Annotated[int, typer.Option("--messages", help="Chat messages to send")] = 100,
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="GGUF the profile was measured with (default: demo)"),
    ] = None,
    tier: Annotated[
        str | None,
        typer.Option(
            "--tier",
            help="Tier to soak (default: the default tier if it fits, else "
            "the one the app would select here)",
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", help="The app's max_tokens (for the n_ctx check)")
    ] = 512,
    reply_tokens: Annotated[
        int, typer.Option("--reply-tokens", help="Cap on each soak reply (typical length)")
    ] = 60,
    history_turns: Annotated[
        int, typer.Option("--history-turns", help="Turns of history sent (the app's context_limit)")
    ] = 10,
    workload: Annotated[
        Path, typer.Option("--workload", help="System prompt, template and first history")
    ] = DEFAULT_WORKLOAD,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds for the whole soak")
    ] = 3600.0,
) -> None:
    """Chat with the app's prompt format and settings in one process; report RSS/VRAM and
    latency at messages 10/50/100, flag memory growth (a leak) and prompts that can't fit n_ctx."""
    from tuner.soak import render, soak_profile

    report = soak_profile(
        path,
        messages=messages,
        model=model,
        tier=tier,
        max_tokens=max_tokens,
        reply_tokens=reply_tokens,
        history_turns=history_turns,
        workload=workload,
        timeout_s=timeout,
        echo=lambda line: typer.echo(line),
    )
    typer.echo(render(report))
    if not report.passed:
        raise typer.Exit(1)
