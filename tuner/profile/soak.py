"""`dm-tune soak`: long Desktop-Mate chats with one tier of a profile, each in one process.

Why: the study measures single answers in fresh processes, but the app keeps its model loaded for
hours and sends a growing prompt (system prompt + the last 10 interactions). Three things only
show up there: memory that grows message after message (a leak); a prompt that no longer fits
`n_ctx` once the history holds long replies, which llama-cpp-python answers by cutting the reply
short or refusing the prompt (and, the app's history being persisted, every later message
fails); and the cost of the app's sliding window, which changes every prompt right after the
system prompt so that llama-cpp-python's prefix cache reuses nothing.

So the soak holds two conversations, each in its own child process
(objectives/soak_child.py, under the trial runner's timeout and process-tree discipline):
"app as is" (the five keys the app passes to Llama(...), the last `history_turns` interactions)
and "app + helper" (the whole tier, the history tuner.history_fit.fit_history keeps). It reports
where the first overflows and what each costs in first-token latency once the window is full.
Memory growth is judged on the helper conversation, which is the one that runs every message.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from objectives.launch import ColdLauncher, Launcher
from objectives.soak_child import SoakSpec
from objectives.workload import APP_TEMPERATURE, APP_TOP_P, Workload
from tuner.echo import Echo
from tuner.errors import UserError
from tuner.machine import measurement_lock
from tuner.paths import default_config
from tuner.profile.llm_profile import APP_KEYS, Profile, ProfileError, Tier
from tuner.profile.run import FreeVram, free_vram, open_profile, resolve_model
from tuner.yaml_io import load_model

SOAK_ARGV = [sys.executable, "-m", "objectives.soak_child"]
APP_STOP = ("<|user|>", "<|system|>")  # the app's stop strings (its model call)
# Growth from message 10 to the end above this is a suspected leak. Message 10, not the load:
# the first answers still grow llama.cpp's and Python's buffers to their working size.
LEAK_FRACTION = 0.05
LEAK_MB = 50.0
REFERENCE_MESSAGE = 10
MESSAGES = 100  # a soak's chat messages
REPLY_TOKENS = 60  # each soak reply's cap: a typical reply
CONVERSATION_TIMEOUT_S = 3600.0  # for each of the two conversations


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
class TurnRecord:
    """One message of a conversation: what was sent and how long the first token took."""

    message: int
    kept: int  # interactions of history sent
    prompt_tokens: int
    reply_tokens: int
    ttft_ms: float
    steady: bool  # the app's window was full (its history held `history_turns` interactions)


@dataclass(frozen=True)
class Chat:
    """One of the soak's two conversations, as its child process recorded it."""

    label: str  # "app as is" or "app + helper"
    keys: tuple[str, ...]  # the Llama(...) keys it was loaded with
    messages_done: int
    turns: tuple[TurnRecord, ...]
    checkpoints: tuple[Checkpoint, ...]
    rss_after_load_mb: float
    vram_after_load_mb: float | None
    peak_vram_mb: float | None  # sampled by the parent over the whole chat; None without a GPU
    overflow_at: int | None  # the message the app fails on; None: every message fit
    overflow_why: str
    max_prompt_tokens: int  # the overflowing prompt included
    wall_s: float

    @property
    def steady_ttft_ms(self) -> tuple[float, ...]:
        return tuple(t.ttft_ms for t in self.turns if t.steady)

    def ttft_summary(self) -> str:
        """Median first-token latency of the steady-state turns, with min-max and count."""
        xs = self.steady_ttft_ms
        if not xs:
            return "no steady-state turn"
        med = statistics.median(xs)
        return f"{med:.0f} ms ({min(xs):.0f}-{max(xs):.0f}, {len(xs)} turns)"


@dataclass(frozen=True)
class SoakReport:
    profile: Path
    model: Path
    tier: str
    messages: int  # asked for
    reply_tokens: int
    long_replies: bool
    history_turns: int
    max_tokens: int
    block: int
    n_ctx: int
    context: ContextBudget
    app: Chat
    helper: Chat
    warnings: tuple[str, ...]  # echoed at the start (VRAM short, keys the app's loader drops)

    @property
    def growth(self) -> tuple[Growth, ...]:
        """Judged on the helper conversation: it runs every message (the app as is may stop
        at its overflow)."""
        return growth_of(self.helper.checkpoints)

    @property
    def leak(self) -> bool:
        return any(g.leak for g in self.growth)

    @property
    def overflow(self) -> bool:
        """An overflow even with the helper: the tier's n_ctx can't hold the app's prompt."""
        return self.helper.overflow_at is not None

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


def helper_block(history_turns: int) -> int:
    """fit_history's block: half the window, so the window holds from half to all of it."""
    return max(1, history_turns // 2)


def app_keys(tier: Tier) -> dict[str, Any]:
    """What the app passes to Llama(...) today: the tier's five APP_KEYS, the rest dropped."""
    return {k: v for k, v in tier.llama.kwargs().items() if k in APP_KEYS}


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
    model: Path,
    params: dict[str, Any],
    w: Workload,
    messages: int,
    reply_tokens: int,
    history_turns: int,
    long_replies: bool,
    fit: dict[str, int] | None,
) -> SoakSpec:
    return SoakSpec(
        model_path=str(model),
        params=params,
        chat={
            "template": w.template.model_dump(),
            "system_prompt": w.system_prompt,
            "history": [[t.user, t.assistant] for t in w.history],
            "temperature": APP_TEMPERATURE,
            "top_p": APP_TOP_P,
            "stop": list(APP_STOP),
            "seed": w.seed,
        },
        messages=messages,
        reply_tokens=reply_tokens,
        long_replies=long_replies,
        history_turns=history_turns,
        fit=fit,
        checkpoints=tuple(checkpoints_for(messages)),
    )


def _chat(
    label: str, spec: SoakSpec, tier: str, timeout_s: float, launcher: Launcher
) -> tuple[Chat, dict[str, Any]]:
    """Run one conversation's child; its Chat and the raw payload (token counts)."""
    res = launcher.run(spec, timeout_s)
    if res.status != "ok":
        raise UserError(f"the soak of tier {tier} ({label}) did not finish: {res.reason}")
    p = res.payload
    over = p["overflow"]
    chat = Chat(
        label=label,
        keys=tuple(spec.params),
        messages_done=int(p["messages_done"]),
        turns=tuple(TurnRecord(**t) for t in p["turns"]),
        checkpoints=tuple(Checkpoint(**c) for c in p["checkpoints"]),
        rss_after_load_mb=float(p["rss_after_load_mb"]),
        vram_after_load_mb=p["vram_after_load_mb"],
        peak_vram_mb=res.gpu.vram_mb,
        overflow_at=None if over is None else int(over["message"]),
        overflow_why="" if over is None else str(over["why"]),
        max_prompt_tokens=int(p["max_prompt_tokens"]),
        wall_s=res.wall_s,
    )
    return chat, p


def soak_profile(
    path: Path,
    *,
    messages: int = MESSAGES,
    model: Path | None = None,
    tier: str | None = None,
    max_tokens: int | None = None,
    reply_tokens: int = REPLY_TOKENS,
    long_replies: bool = False,
    history_turns: int | None = None,
    workload: Path | None = None,
    timeout_s: float = CONVERSATION_TIMEOUT_S,
    wait: bool = True,
    echo: Echo = print,
) -> SoakReport:
    """Chat `messages` times with one tier twice, the app as is and the app with fit_history,
    each in one child process, and judge memory, n_ctx and steady-state first-token latency.

    `max_tokens` is the app's reply limit (the room fit_history keeps, and the worst-case
    prompt); each soak reply is capped at `reply_tokens` (typical reply length) so a
    100-message soak stays minutes long, and with `long_replies` every reply is that long.
    `history_turns` is the app's `context_limit`. Both default to the profile's
    `conversation` (version 2), else to the workload's `app` settings (10 and 512).
    `timeout_s` applies to each conversation. The machine's measurement lock is held from the
    free-VRAM reading on (`wait=False`: a UserError instead of waiting,
    tuner/machine/_measure_lock.py).
    """
    profile = open_profile(path)
    w = load_model(workload or default_config("workload.yaml"), Workload)
    max_tokens, history_turns = _app_settings(profile, w, max_tokens, history_turns)
    _check_options(messages, max_tokens, reply_tokens, history_turns, timeout_s)
    model_path = resolve_model(profile, model)
    with measurement_lock("dm-tune soak", f"profile {path.name}", wait=wait, echo=echo):
        free = free_vram()
        chosen = _chosen_tier(profile, tier, free)
        warnings = _tier_warnings(chosen, free)
        for line in warnings:
            echo(f"warning: {line}")
        replies = f"replies of {reply_tokens}" if long_replies else f"replies up to {reply_tokens}"
        echo(
            f"Soaking tier {chosen.name} of {path} on {model_path.name}: {messages} messages, "
            f"{replies} tokens, history of {history_turns} interactions, max_tokens {max_tokens}"
        )
        block = helper_block(history_turns)

        def spec(params: dict[str, Any], fit: dict[str, int] | None) -> SoakSpec:
            return _spec(
                model_path, params, w, messages, reply_tokens, history_turns, long_replies, fit
            )

        fit = {"max_tokens": max_tokens, "block": block}
        app, helper, p = _conversations(chosen, spec, fit, timeout_s, echo)
        return SoakReport(
            profile=path,
            model=model_path,
            tier=chosen.name,
            messages=messages,
            reply_tokens=reply_tokens,
            long_replies=long_replies,
            history_turns=history_turns,
            max_tokens=max_tokens,
            block=block,
            n_ctx=int(p["n_ctx"]),
            context=_context_budget(p, max_tokens, history_turns),
            app=app,
            helper=helper,
            warnings=tuple(warnings),
        )


def _chosen_tier(profile: Profile, name: str | None, free: FreeVram) -> Tier:
    """pick_tier, with an unknown --tier name as a UserError."""
    try:
        return pick_tier(profile, name, free)
    except ProfileError as exc:  # no tier of that name
        raise UserError(str(exc)) from None


def _conversations(
    chosen: Tier,
    spec: Callable[[dict[str, Any], dict[str, int] | None], SoakSpec],
    fit: dict[str, int],
    timeout_s: float,
    echo: Echo,
) -> tuple[Chat, Chat, dict[str, Any]]:
    """The app as is, then the app + helper, each in a fresh soak child; with the helper
    child's raw payload (n_ctx and the prompt's token counts)."""
    echo("  1/2 app as is: its five Llama(...) keys, the last interactions")
    launcher = ColdLauncher(SOAK_ARGV)  # each conversation in a fresh soak child
    app, _ = _chat("app as is", spec(app_keys(chosen), None), chosen.name, timeout_s, launcher)
    echo("  2/2 app + helper: the whole tier, fit_history")
    helper, p = _chat(
        "app + helper", spec(chosen.llama.kwargs(), fit), chosen.name, timeout_s, launcher
    )
    return app, helper, p


def _context_budget(p: dict[str, Any], max_tokens: int, history_turns: int) -> ContextBudget:
    """The app's longest prompt, from the token counts the helper child measured."""
    return ContextBudget(
        n_ctx=int(p["n_ctx"]),
        max_tokens=max_tokens,
        history_turns=history_turns,
        **p["parts"],
    )


def _app_settings(
    profile: Profile, w: Workload, max_tokens: int | None, history_turns: int | None
) -> tuple[int, int]:
    """The app's max_tokens and history_turns: as given, else the profile's conversation (a
    version 2 profile), else the workload's `app` settings."""
    conv = profile.conversation
    if max_tokens is None:
        max_tokens = conv.max_tokens if conv is not None else w.app.max_tokens
    if history_turns is None:
        history_turns = conv.turns_kept if conv is not None else w.app.turns_kept
    return max_tokens, history_turns


def _tier_warnings(chosen: Tier, free: FreeVram) -> list[str]:
    """Why the soak's figures may not be the app's: too little free VRAM for the tier, or
    keys the app's loader would drop."""
    warnings: list[str] = []
    if chosen.min_vram_free_mb > (free.mb or 0.0):
        warnings.append(
            f"tier {chosen.name} needs {chosen.min_vram_free_mb:.0f} MB free VRAM "
            f"({free.describe()}); its figures won't be the app's"
        )
    extra = chosen.app_keys_warning()
    if extra:
        warnings.append(extra)
    return warnings


def _mb(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.0f} MB"


def _context_line(c: ContextBudget) -> str:
    """The app as is, worst case: every kept reply max_tokens long (a finding, not a FAIL)."""
    worst = (
        f"worst-case prompt {c.worst_case_tokens} tokens = system {c.system_tokens} + "
        f"{c.history_turns} turns x {c.turn_tokens} (user {c.user_tokens_max} + reply "
        f"{c.max_tokens} + tags {c.assistant_tag_tokens}) + new message "
        f"{c.user_tokens_max + c.generation_prefix_tokens} + reply {c.max_tokens}"
    )
    if not c.overflows:
        return f"context, app as is: {worst} <= n_ctx {c.n_ctx}: OK"
    fit = c.turns_that_fit
    room = f"only {fit} full-length turn(s) fit" if fit >= 0 else "not even an empty history fits"
    return f"context, app as is: {worst} > n_ctx {c.n_ctx}: can overflow ({room})"


def _overflow_cell(c: Chat) -> str:
    return "none" if c.overflow_at is None else f"at message {c.overflow_at}"


def _comparison(r: SoakReport) -> list[str]:
    def kept(c: Chat) -> str:
        ks = [t.kept for t in c.turns]
        if not ks:
            return "-"
        n = str(ks[0]) if min(ks) == max(ks) else f"{min(ks)}-{max(ks)}"
        return f"{n} interactions"

    def prompts(c: Chat) -> str:
        xs = [t.prompt_tokens for t in c.turns if t.steady]
        return f"median {statistics.median(xs):.0f} tokens" if xs else "-"

    rows = [
        ("", r.app.label, r.helper.label),
        (
            "Llama(...) keys",
            f"{len(r.app.keys)} (the app's)",
            f"{len(r.helper.keys)} (the whole tier)",
        ),
        (
            "history sent",
            f"last {r.history_turns}: {kept(r.app)}",
            f"fit_history, blocks of {r.block}: {kept(r.helper)}",
        ),
        (
            "messages done",
            f"{r.app.messages_done}/{r.messages}",
            f"{r.helper.messages_done}/{r.messages}",
        ),
        ("overflow", _overflow_cell(r.app), _overflow_cell(r.helper)),
        ("first token, steady", r.app.ttft_summary(), r.helper.ttft_summary()),
        ("prompt, steady", prompts(r.app), prompts(r.helper)),
        (
            "largest prompt",
            f"{r.app.max_prompt_tokens} tokens",
            f"{r.helper.max_prompt_tokens} tokens",
        ),
        ("wall", f"{r.app.wall_s:.0f} s", f"{r.helper.wall_s:.0f} s"),
    ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    return [f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows]


def _latency_line(r: SoakReport) -> str:
    a, h = r.app.steady_ttft_ms, r.helper.steady_ttft_ms
    if not a or not h:
        return (
            "steady-state first-token latency: not compared (a conversation has no turn "
            "after its window is full)"
        )
    ma, mh = statistics.median(a), statistics.median(h)
    ratio = f", {ma / mh:.1f}x faster" if mh > 0 else ""
    return (
        f"steady-state first-token latency (median): app as is {ma:.0f} ms vs app + helper "
        f"{mh:.0f} ms{ratio}"
    )


def render(r: SoakReport) -> str:
    replies = (
        f"replies of {r.reply_tokens} tokens (long replies)"
        if r.long_replies
        else f"replies capped at {r.reply_tokens} tokens"
    )
    h = r.helper
    lines = [
        f"Soak of tier {r.tier} ({r.model.name}), n_ctx {r.n_ctx}: {r.messages} messages, "
        f"{replies}, the app's max_tokens {r.max_tokens}, history of {r.history_turns}",
        "",
        *_comparison(r),
        "",
        f"app + helper memory: after load RSS {_mb(h.rss_after_load_mb)}, VRAM "
        f"{_mb(h.vram_after_load_mb)}; peak VRAM {_mb(h.peak_vram_mb)}",
        "message  RSS        VRAM       first token  answer   prompt tokens  reply tokens",
    ]
    for c in h.checkpoints:
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
    lines.append(_context_line(r.context))
    lines.append(_latency_line(r))
    if r.app.overflow_at is not None:
        lines.append(
            f"finding: the app as it is overflows at message {r.app.overflow_at} "
            f"({r.app.overflow_why}); add the helper: docs/desktop-mate.md"
        )
    if h.overflow_at is not None:
        lines.append(f"app + helper overflows at message {h.overflow_at}: {h.overflow_why}")
    problems = [
        w
        for w, bad in (("suspected leak", r.leak), ("n_ctx overflow with the helper", r.overflow))
        if bad
    ]
    lines.append("FAIL: " + ", ".join(problems) if problems else "PASS")
    return "\n".join(lines)
