"""`dm-tune soak`: long chats with one tier of a profile; exit 1 on a leak or an overflow
that the history helper doesn't prevent."""

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
from tuner.profile.soak import CONVERSATION_TIMEOUT_S, MESSAGES, REPLY_TOKENS


def soak(
    path: ProfileArgument,
    messages: Annotated[int, typer.Option("--messages", help="Chat messages to send")] = MESSAGES,
    model: ProfileModelOption = None,
    tier: Annotated[
        str | None,
        typer.Option(
            "--tier",
            help="Tier to soak (default: the default tier if it fits, else "
            "the one the app would select here)",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens",
            help="The app's max_tokens: the room the helper keeps for a reply (default: the "
            "profile's conversation, else the workload's app.max_tokens)",
        ),
    ] = None,
    reply_tokens: Annotated[
        int, typer.Option("--reply-tokens", help="Cap on each soak reply (typical length)")
    ] = REPLY_TOKENS,
    long_replies: Annotated[
        bool,
        typer.Option(
            "--long-replies",
            help="Make every reply --reply-tokens long (no end-of-sequence token) so the "
            "context fills deterministically",
        ),
    ] = False,
    history_turns: Annotated[
        int | None,
        typer.Option(
            "--history-turns",
            help="Interactions of history the app sends, its context_limit (default: the "
            "profile's conversation, else the workload's app.turns_kept)",
        ),
    ] = None,
    workload: Annotated[
        Path, typer.Option("--workload", help="System prompt, template and first history")
    ] = DEFAULT_WORKLOAD,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds for each of the two conversations")
    ] = CONVERSATION_TIMEOUT_S,
    no_wait: NoWaitOption = False,
) -> None:
    """Chat twice with the app's prompt format and settings, each in one process: the app as it
    is (its five Llama keys, the last interactions) and the app with fit_history (the whole
    tier). Report where the first overflows n_ctx, both steady-state first-token latencies, and
    RSS/VRAM at messages 10/50/100 of the second; fail on a leak or an overflow with the helper."""
    from tuner.profile.soak import render, soak_profile

    report = soak_profile(
        path,
        messages=messages,
        model=model,
        tier=tier,
        max_tokens=max_tokens,
        reply_tokens=reply_tokens,
        long_replies=long_replies,
        history_turns=history_turns,
        workload=workload,
        timeout_s=timeout,
        wait=not no_wait,
        echo=lambda line: typer.echo(line),
    )
    typer.echo(render(report))
    if not report.passed:
        raise typer.Exit(1)
