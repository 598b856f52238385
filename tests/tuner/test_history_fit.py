"""fit_history: the history the app sends always fits n_ctx and mostly extends the last prompt.

Its contract is about a `count_tokens` callable, so most tests count words (a stand-in
tokenizer that makes the arithmetic readable); one test uses the demo model's real tokenizer.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from objectives.workload import Workload
from tuner.history_fit import fit_history
from tuner.paths import default_config
from tuner.yaml_io import load_model

Interaction = tuple[str, str]  # (user message, reply), as the app stores them
SYSTEM = "tu es Kira"


def render(turns: Sequence[Interaction], message: str) -> str:
    """The app's prompt shape: each prompt ends where the next one's last reply starts."""
    parts = [f"<s> {SYSTEM} </s> "]
    for user, reply in turns:
        parts.append(f"<u> {user} </u> <a> {reply} </a> ")
    return "".join(parts) + f"<u> {message} </u> <a> "


def words(text: str) -> int:
    return len(text.split())


def words_of(n: int, rng: random.Random) -> str:
    return " ".join(rng.choice(("oui", "la", "luciole", "code")) for _ in range(n))


def chat(
    turns: int,
    *,
    n_ctx: int,
    max_tokens: int,
    reply_words: Callable[[random.Random], int] | None = None,
    seed: int = 0,
    fetch: int = 20,
) -> list[tuple[list[Interaction], str, int]]:
    """Play a conversation the way the app would with the helper: fetch the last `fetch`
    interactions and the total, keep what fit_history says, append the reply.
    Returns, per turn, (kept, prompt, absolute start index of the window)."""
    rng = random.Random(seed)
    history: list[Interaction] = []
    out = []
    for _ in range(turns):
        message = words_of(rng.randint(1, 30), rng)
        recent = history[-fetch:]
        first = len(history) - len(recent)
        kept = fit_history(
            recent,
            lambda k, m=message: render(k, m),
            words,
            n_ctx=n_ctx,
            max_tokens=max_tokens,
            first_index=first,
        )
        out.append((kept, render(kept, message), len(history) - len(kept)))
        n = reply_words(rng) if reply_words else rng.randint(1, max_tokens)
        history.append((message, words_of(n, rng)))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_the_prompt_and_a_max_tokens_reply_always_fit_n_ctx(seed: int) -> None:
    # replies up to max_tokens long: 10 of them (~5,000 words) never fit 2,048
    for kept, prompt, _ in chat(120, n_ctx=2048, max_tokens=512, seed=seed):
        assert words(prompt) + 512 <= 2048
        assert len(kept) <= 10


def test_the_window_never_exceeds_max_turns_and_keeps_a_suffix() -> None:
    rng = random.Random(1)
    history = [(f"u{i}", words_of(rng.randint(1, 40), rng)) for i in range(37)]
    for end in range(len(history) + 1):
        kept = fit_history(
            history[:end],
            lambda k: render(k, "m"),
            words,
            n_ctx=100_000,
            max_tokens=512,
            max_turns=10,
            block=5,
        )
        assert 0 < len(kept) <= 10 or end == 0
        assert kept == history[end - len(kept) : end]
        if end >= 10:  # the window holds from max_turns - block + 1 to max_turns
            assert len(kept) >= 6


def test_consecutive_prompts_share_their_prefix_except_at_block_boundaries() -> None:
    turns = chat(60, n_ctx=100_000, max_tokens=512, reply_words=lambda r: r.randint(20, 120))
    trims = []
    for (_, before, start_before), (_, after, start_after) in itertools.pairwise(turns):
        if start_after == start_before:
            assert after.startswith(before)  # llama-cpp-python reuses the whole cached prompt
        else:
            trims.append(start_after)
    assert all(s % 5 == 0 for s in trims)
    # one trim per 5 turns once the window is full (turn 11 on): 50 turns -> 10 trims
    assert trims == list(range(5, 55, 5))


def test_overflow_moves_the_start_by_whole_blocks_and_never_back() -> None:
    # long replies: the tokens, not max_turns, decide the window (5 always fit, 10 seldom)
    turns = chat(200, n_ctx=4000, max_tokens=512, reply_words=lambda r: r.randint(300, 512))
    starts = [s for _, _, s in turns]
    assert starts == sorted(starts)
    assert all(s % 5 == 0 for s in starts)
    assert min(len(k) for k, _, _ in turns[20:]) < 6  # tokens did move the start
    assert all(words(p) + 512 <= 4000 for _, p, _ in turns)


def test_when_no_block_fits_it_keeps_the_longest_suffix_that_does() -> None:
    # a block of 5 long replies never fits 2,048: the last one to three still do
    turns = chat(60, n_ctx=2048, max_tokens=512, reply_words=lambda r: r.randint(450, 512))
    starts = [s for _, _, s in turns]
    assert starts == sorted(starts)
    assert all(1 <= len(k) <= 3 for k, _, _ in turns[1:])
    assert all(words(p) + 512 <= 2048 for _, p, _ in turns)


def test_the_window_start_counts_from_the_whole_conversation() -> None:
    history = [(f"u{i}", f"r{i}") for i in range(23)]

    def fit(h: Sequence[Interaction], first: int) -> list[Interaction]:
        return fit_history(
            h, lambda k: render(k, "m"), words, n_ctx=10_000, max_tokens=10, first_index=first
        )

    whole = fit(history, 0)
    assert whole == history[15:]  # 23 - 10 = 13, up to the next multiple of 5
    assert fit(history[-20:], 3) == whole  # what the app fetches: the last 2 x 10 and the total
    assert fit(history[-10:], 13) == whole


def test_nothing_fits_gives_an_empty_history() -> None:
    history = [("u", "r")] * 4
    prompt_alone = words(render([], "m"))
    kept = fit_history(
        history, lambda k: render(k, "m"), words, n_ctx=prompt_alone + 511, max_tokens=512
    )
    assert kept == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_ctx": 0}, "n_ctx and max_tokens must be at least 1"),
        ({"max_tokens": 0}, "n_ctx and max_tokens must be at least 1"),
        ({"max_turns": -1}, "can't be negative"),
        ({"first_index": -2}, "can't be negative"),
        ({"block": 0}, "block must be from 1 to max_turns (10), got 0"),
        ({"block": 11}, "block must be from 1 to max_turns (10), got 11"),
        ({"first_index": 5}, "pass at least the last max_turns (10), or the whole conversation"),
    ],
)
def test_bad_arguments_are_one_line_value_errors(kwargs: dict[str, int], message: str) -> None:
    args: dict[str, int] = {"n_ctx": 4096, "max_tokens": 512, **kwargs}
    with pytest.raises(ValueError, match=r"^[^\n]+$") as err:
        fit_history([("u", "r")] * 3, lambda k: render(k, "m"), words, **args)
    assert message in str(err.value)


def test_it_imports_only_the_standard_library_and_is_re_exported_by_profile() -> None:
    code = (
        "import json, sys; import tuner.history_fit; "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'optuna', 'plotly', 'pydantic', 'yaml', 'llama_cpp', 'numpy', 'objectives'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    from tuner import profile

    assert profile.fit_history is fit_history


def test_real_tokenizer_keeps_the_apps_prompts_within_n_ctx(demo_model: Path) -> None:
    import llama_cpp

    llm = llama_cpp.Llama(str(demo_model), vocab_only=True, verbose=False)
    w = load_model(default_config("workload.yaml"), Workload)

    def count(text: str) -> int:  # as llama-cpp-python counts a completion's prompt
        return len(llm.tokenize(text.encode("utf-8"), special=True))

    long_reply = " ".join(t.assistant for t in w.history)  # ~1,000 tokens of French
    history = [(t.user, t.assistant) for t in w.history]
    rng = random.Random(7)
    app_overflowed = False
    for turn in range(25):
        message = history[turn % len(history)][0]
        recent = history[-20:]
        kept = fit_history(
            recent,
            lambda k, m=message: w.render(k, m),
            count,
            n_ctx=2048,
            max_tokens=512,
            first_index=len(history) - len(recent),
        )
        assert kept and count(w.render(kept, message)) + 512 <= 2048
        app_overflowed |= count(w.render(history[-10:], message)) + 512 > 2048
        cut = rng.randint(100, 1400)  # replies of up to ~500 tokens
        history.append((message, long_reply[:cut]))
    assert app_overflowed  # the app's own window would not have fit
