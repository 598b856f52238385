"""`dm-tune soak`: a long Desktop-Mate chat with one tier of a profile, in one process.

Why: the study measures single answers in fresh processes, but the app keeps its model loaded for
hours and sends a growing prompt (system prompt + the last 10 turns). Two failures only show up
there: memory that grows message after message (a leak), and a prompt that no longer fits `n_ctx`
once the history is full, which llama-cpp-python answers by cutting the reply short or refusing
the prompt. The soak runs objectives/soak_child.py under the trial runner's timeout and
process-tree discipline and judges what it recorded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objectives.runner import run_child
from objectives.workload import Workload
from tuner.errors import UserError
from tuner.paths import default_config
from tuner.profile import Profile, ProfileError, Tier
from tuner.profile_run import FreeVram, free_vram, open_profile, resolve_model
from tuner.yaml_io import load_model

SOAK_ARGV = [sys.executable, "-m", "objectives.soak_child"]
# Desktop-Mate's generation settings (data/config.json and its model call).
APP_TEMPERATURE = 0.7
APP_TOP_P = 0.9
APP_STOP = ("<|user|>", "<|system|>")
APP_MAX_TOKENS = 512
APP_HISTORY_TURNS = 10
# Growth from message 10 to the end above this is a suspected leak. Message 10, not the load:
# the first answers still grow llama.cpp's and Python's buffers to their working size.
LEAK_FRACTION = 0.05
LEAK_MB = 50.0
REFERENCE_MESSAGE = 10

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Checkpoint:
    """Memory and latency right after one of the checkpoint messages."""

    message: int
    rss_mb: float
    vram_mb: float | None  # None: no NVIDIA GPU, or the driver can't tell per process
    ttft_ms: float
    answer_s: float
    prompt_tokens: int
    reply_tokens: int


@dataclass(frozen=True)
class ContextBudget:
    """The longest prompt the app can send: system prompt, a full history whose replies are
    max_tokens long, the longest user message, then room for a max_tokens reply."""

    n_ctx: int
    max_tokens: int
    history_turns: int
    system_tokens: int
    user_tokens_max: int
    assistant_tag_tokens: int
    generation_prefix_tokens: int

    @property
    def turn_tokens(self) -> int:
        return self.user_tokens_max + self.assistant_tag_tokens + self.max_tokens

    def tokens_with(self, turns: int) -> int:
        return (
            self.system_tokens
            + turns * self.turn_tokens
            + self.user_tokens_max
            + self.generation_prefix_tokens
            + self.max_tokens
        )

    @property
    def worst_case_tokens(self) -> int:
        return self.tokens_with(self.history_turns)

    @property
    def overflows(self) -> bool:
        return self.worst_case_tokens > self.n_ctx

    @property
    def turns_that_fit(self) -> int:
        """Turns of full-length history that still fit n_ctx (-1: not even an empty history)."""
        fit = -1
        for k in range(self.history_turns + 1):
            if self.tokens_with(k) <= self.n_ctx:
                fit = k
        return fit


@dataclass(frozen=True)
class Growth:
    """Memory change between two checkpoints, against the leak threshold."""

    what: str  # "RSS" or "VRAM"
    from_message: int
    to_message: int
    start_mb: float
    end_mb: float

    @property
    def threshold_mb(self) -> float:
        return self.start_mb * LEAK_FRACTION + LEAK_MB

    @property
    def grown_mb(self) -> float:
        return self.end_mb - self.start_mb

    @property
    def leak(self) -> bool:
        return self.grown_mb > self.threshold_mb


@dataclass(frozen=True)
class SoakReport:
    profile: Path
    model: Path
    tier: str
    messages: int  # asked for
    messages_done: int
    reply_tokens: int
    rss_after_load_mb: float
    vram_after_load_mb: float | None
    peak_vram_mb: float | None  # sampled by the parent over the whole soak; None without a GPU
    checkpoints: tuple[Checkpoint, ...]
    context: ContextBudget
    max_prompt_tokens: int
    growth: tuple[Growth, ...]
    stopped: str  # why the soak ended early (a prompt that didn't fit), "" otherwise
    wall_s: float

    @property
    def leak(self) -> bool:
        return any(g.leak for g in self.growth)

    @property
    def overflow(self) -> bool:
        return self.context.overflows or bool(self.stopped)

    @property
    def passed(self) -> bool:
        return not (self.leak or self.overflow)


def checkpoints_for(messages: int) -> list[int]:
    """Messages 10, 50, 100, every 100th after, and the last one."""
    marks = {m for m in (10, 50) if m <= messages}
    marks |= set(range(100, messages + 1, 100))
    return sorted(marks | {messages})


def growth_of(checkpoints: tuple[Checkpoint, ...]) -> tuple[Growth, ...]:
    """RSS (and VRAM where known) from message 10 to the last checkpoint; empty when the soak
    didn't get past message 10."""
    start = next((c for c in checkpoints if c.message == REFERENCE_MESSAGE), None)
    end = checkpoints[-1] if checkpoints else None
    if start is None or end is None or end.message <= start.message:
        return ()
    out = [Growth("RSS", start.message, end.message, start.rss_mb, end.rss_mb)]
    if start.vram_mb is not None and end.vram_mb is not None:
        out.append(Growth("VRAM", start.message, end.message, start.vram_mb, end.vram_mb))
    return tuple(out)


def pick_tier(profile: Profile, name: str | None, free: FreeVram) -> Tier:
    """--tier, else the default tier when it fits the free VRAM, else the tier the app's
    select_profile would load here (the CPU tier without a GPU)."""
    if name is not None:
        return profile.tier(name)
    default = profile.tier(profile.default_tier)
    free_mb = free.mb or 0.0
    return default if default.min_vram_free_mb <= free_mb else profile.tier_for(free_mb)


def _check_options(
    messages: int, max_tokens: int, reply_tokens: int, history_turns: int, timeout_s: float
) -> None:
    if messages < 1:
        raise UserError(f"--messages must be at least 1 (got {messages})")
    if history_turns < 0:
        raise UserError(f"--history-turns can't be negative (got {history_turns})")
    if max_tokens < 1 or reply_tokens < 1:
        raise UserError("--max-tokens and --reply-tokens must be at least 1")
    if reply_tokens > max_tokens:
        raise UserError(f"--reply-tokens ({reply_tokens}) can't exceed --max-tokens ({max_tokens})")
    if timeout_s <= 0:
        raise UserError("--timeout must be above zero seconds")


def _spec(
    model: Path, tier: Tier, w: Workload, messages: int, reply_tokens: int, history_turns: int
) -> dict[str, Any]:
    return {
        "model_path": str(model),
        "params": tier.llama.kwargs(),
        "chat": {
            "template": w.template.model_dump(),
            "system_prompt": w.system_prompt,
            "history": [[t.user, t.assistant] for t in w.history],
            "temperature": APP_TEMPERATURE,
            "top_p": APP_TOP_P,
            "stop": list(APP_STOP),
            "seed": w.seed,
        },
        "messages": messages,
        "reply_tokens": reply_tokens,
        "history_turns": history_turns,
        "checkpoints": checkpoints_for(messages),
    }


def soak_profile(
    path: Path,
    *,
    messages: int = 100,
    model: Path | None = None,
    tier: str | None = None,
    max_tokens: int = APP_MAX_TOKENS,
    reply_tokens: int = 60,
    history_turns: int = APP_HISTORY_TURNS,
    workload: Path | None = None,
    timeout_s: float = 3600.0,
    echo: Echo = print,
) -> SoakReport:
    """Chat `messages` times with one tier in one child process and judge memory and n_ctx.

    `max_tokens` is the app's limit, used for the worst-case prompt; each soak reply is capped
    at `reply_tokens` (typical reply length) so a 100-message soak stays minutes long.
    `history_turns` is the app's `context_limit` (10).
    """
    _check_options(messages, max_tokens, reply_tokens, history_turns, timeout_s)
    profile = open_profile(path)
    model_path = resolve_model(profile, model)
    w = load_model(workload or default_config("workload.yaml"), Workload)
    free = free_vram()
    try:
        chosen = pick_tier(profile, tier, free)
    except ProfileError as exc:  # no tier of that name
        raise UserError(str(exc)) from None
    if chosen.min_vram_free_mb > (free.mb or 0.0):
        echo(
            f"warning: tier {chosen.name} needs {chosen.min_vram_free_mb:.0f} MB free VRAM "
            f"({free.describe()}); its figures won't be the app's"
        )
    echo(
        f"Soaking tier {chosen.name} of {path} on {model_path.name}: {messages} messages, "
        f"replies up to {reply_tokens} tokens, history of {history_turns} turns"
    )
    spec = _spec(model_path, chosen, w, messages, reply_tokens, history_turns)
    res = run_child(spec, timeout_s, argv=SOAK_ARGV)
    if res.status != "ok":
        raise UserError(f"the soak of tier {chosen.name} did not finish: {res.reason}")
    p = res.payload
    cps = tuple(Checkpoint(**c) for c in p["checkpoints"])
    context = ContextBudget(
        n_ctx=int(p["n_ctx"]),
        max_tokens=max_tokens,
        history_turns=history_turns,
        **p["parts"],
    )
    return SoakReport(
        profile=path,
        model=model_path,
        tier=chosen.name,
        messages=messages,
        messages_done=int(p["messages_done"]),
        reply_tokens=reply_tokens,
        rss_after_load_mb=float(p["rss_after_load_mb"]),
        vram_after_load_mb=p["vram_after_load_mb"],
        peak_vram_mb=res.gpu.vram_mb,
        checkpoints=cps,
        context=context,
        max_prompt_tokens=int(p["max_prompt_tokens"]),
        growth=growth_of(cps),
        stopped=str(p["stopped"]),
        wall_s=res.wall_s,
    )


def _mb(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.0f} MB"


def _context_lines(c: ContextBudget) -> list[str]:
    worst = (
        f"worst-case prompt {c.worst_case_tokens} tokens = system {c.system_tokens} + "
        f"{c.history_turns} turns x {c.turn_tokens} (user {c.user_tokens_max} + reply "
        f"{c.max_tokens} + tags {c.assistant_tag_tokens}) + new message "
        f"{c.user_tokens_max + c.generation_prefix_tokens} + reply {c.max_tokens}"
    )
    if not c.overflows:
        return [f"context: {worst} <= n_ctx {c.n_ctx}: OK"]
    fit = c.turns_that_fit
    room = (
        f"only {fit} turn(s) of full-length history fit"
        if fit >= 0
        else "not even an empty history fits"
    )
    return [
        f"context: {worst} > n_ctx {c.n_ctx}: OVERFLOW",
        f"  {room}; raise n_ctx to {c.worst_case_tokens} or more, or lower the app's "
        "max_tokens or context_limit",
    ]


def render(r: SoakReport) -> str:
    lines = [
        f"Soak of tier {r.tier} ({r.model.name}): {r.messages_done}/{r.messages} messages in "
        f"{r.wall_s:.0f} s, replies capped at {r.reply_tokens} tokens, n_ctx {r.context.n_ctx}",
        f"after load: RSS {_mb(r.rss_after_load_mb)}, VRAM {_mb(r.vram_after_load_mb)}; "
        f"peak VRAM {_mb(r.peak_vram_mb)}",
        "message  RSS        VRAM       first token  answer   prompt tokens  reply tokens",
    ]
    for c in r.checkpoints:
        lines.append(
            f"{c.message:<7}  {_mb(c.rss_mb):<9}  {_mb(c.vram_mb):<9}  {c.ttft_ms:>8.0f} ms  "
            f"{c.answer_s:>6.2f} s  {c.prompt_tokens:>13}  {c.reply_tokens:>12}"
        )
    if not r.growth:
        lines.append(f"memory: not checked (needs more than {REFERENCE_MESSAGE} messages)")
    for g in r.growth:
        verdict = "SUSPECTED LEAK" if g.leak else "OK"
        lines.append(
            f"memory: {g.what} {g.grown_mb:+.0f} MB from message {g.from_message} to "
            f"{g.to_message} (threshold {g.threshold_mb:.0f} MB = {LEAK_FRACTION:.0%} + "
            f"{LEAK_MB:.0f} MB): {verdict}"
        )
    lines.extend(_context_lines(r.context))
    lines.append(f"largest prompt sent: {r.max_prompt_tokens} tokens")
    if r.stopped:
        lines.append(f"stopped early at {r.stopped}: OVERFLOW")
    problems = [w for w, bad in (("suspected leak", r.leak), ("n_ctx overflow", r.overflow)) if bad]
    lines.append("FAIL: " + ", ".join(problems) if problems else "PASS")
    return "\n".join(lines)
