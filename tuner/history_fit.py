"""Which interactions of a chat history to send so that the prompt always fits `n_ctx` and
llama-cpp-python can reuse its KV cache from one turn to the next.

Desktop-Mate sends its system prompt, the last 10 interactions and the new message. Once the
history is full, that window slides by one interaction per turn: every prompt then differs from
the previous one right after the system prompt, llama-cpp-python's prefix cache reuses nothing,
and every turn processes the whole prompt again. With long replies the prompt also outgrows
`n_ctx`, and since the history is persisted, every later message fails.

`fit_history` keeps a window whose start moves only in steps of `block` interactions, counted
from the start of the conversation: between two steps each prompt extends the previous one (the
cache is reused), and a step drops a whole block at once. When the tokens don't fit, the start
moves on by further blocks. It is stateless: the same conversation gives the same window.

Pure standard library: the app imports it at start-up, next to tuner.profile.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def _check(
    history_len: int, n_ctx: int, max_tokens: int, max_turns: int, block: int, first_index: int
) -> None:
    if n_ctx < 1 or max_tokens < 1:
        raise ValueError(f"n_ctx and max_tokens must be at least 1 (got {n_ctx}, {max_tokens})")
    if max_turns < 0 or first_index < 0:
        raise ValueError(
            f"max_turns and first_index can't be negative (got {max_turns}, {first_index})"
        )
    if not 1 <= block <= max(max_turns, 1):
        raise ValueError(f"block must be from 1 to max_turns ({max_turns}), got {block}")
    if first_index > 0 and history_len < max_turns:
        raise ValueError(
            f"history holds {history_len} interactions after {first_index} earlier ones: pass "
            f"at least the last max_turns ({max_turns}), or the whole conversation"
        )


def fit_history(
    history: Sequence[T],
    prompt_for: Callable[[Sequence[T]], str],
    count_tokens: Callable[[str], int],
    *,
    n_ctx: int,
    max_tokens: int,
    max_turns: int = 10,
    block: int = 5,
    first_index: int = 0,
) -> list[T]:
    """The interactions to send: a suffix of `history` (oldest first) of at most `max_turns`
    whose prompt leaves room for a `max_tokens` reply:
    `count_tokens(prompt_for(kept)) + max_tokens <= n_ctx`.

    `history` is the end of the conversation, oldest first; `first_index` is how many
    interactions came before `history[0]` (the app passes `total - len(history)`). It must hold
    at least the last `max_turns` interactions, or the whole conversation. `prompt_for(kept)`
    renders the full prompt (system prompt, `kept`, the new message); `count_tokens` counts it as
    the model will, e.g. `lambda s: len(llm.tokenize(s.encode("utf-8"), special=True))`.

    The window starts at a multiple of `block` (as an index into the whole conversation): it
    holds from `max_turns - block + 1` to `max_turns` interactions when tokens allow, and only
    every `block`-th turn drops interactions. When tokens don't allow, the start advances by
    whole blocks until the prompt fits; when not even the interactions after the last block
    boundary fit (`n_ctx` too small for a block of long replies), it keeps the longest suffix
    that does. As long as each turn's prompt extends the previous one (the app's template
    does), a later turn never keeps interactions an earlier one dropped.

    Returns [] when not even the last interaction fits. The prompt without history is not
    checked then: when `count_tokens(prompt_for([])) + max_tokens > n_ctx` too (a system
    prompt or a message too long for `n_ctx`), llama-cpp-python will cut the reply or refuse
    the prompt; raise `n_ctx`, lower `max_tokens` or shorten the message.
    """
    _check(len(history), n_ctx, max_tokens, max_turns, block, first_index)
    total = first_index + len(history)
    over = max(total - max_turns, 0)
    aligned = list(range(-(-over // block) * block, total, block))  # multiples of block
    # Past the last block boundary, one interaction at a time: better than no history at all.
    starts = [*aligned, *range(aligned[-1] + 1 if aligned else total, total)]
    for start in starts:
        kept = list(history[start - first_index :])
        if count_tokens(prompt_for(kept)) + max_tokens <= n_ctx:
            return kept
    return []
