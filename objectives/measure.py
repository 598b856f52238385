"""Measure one settings candidate inside the trial child: load, warm up, repeated chat answers."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Any

from objectives import phases
from objectives.metrics import Sample
from objectives.phases import phase

MIN_TOKENS = 8  # a capped answer still has at least this many tokens
PROGRESS_EVERY = MIN_TOKENS  # so pruning can judge a capped answer too
MIN_REPEATS = 1  # the repeat budget can cut a slow trial down to one answer


def _answer(
    llm: Any,
    tokens: list[int],
    n: int,
    temperature: float,
    top_p: float,
    report: bool = False,
    max_s: float | None = None,
) -> list[float]:
    """Generate n tokens (EOS does not stop it); return the time of each token.

    With `max_s`, generation stops early once it has run that long past the first token and has
    MIN_TOKENS tokens: a slow setting's rate is known well before 128 tokens.
    With `report`, progress lines ("dm-tune-progress: TOKENS TTFT_S GEN_S") let the parent stop
    a trial that is already clearly worse than what the study has (pruning)."""
    times: list[float] = []
    if n <= 0:
        return times
    t0 = time.perf_counter()
    for _tok in llm.generate(tokens, temp=temperature, top_p=top_p, reset=True):
        times.append(time.perf_counter())
        k = len(times)
        if report and (k == 1 or k % PROGRESS_EVERY == 0):
            print(
                f"{phases.PROGRESS_PREFIX}{k} {times[0] - t0:.4f} {times[-1] - times[0]:.4f}",
                file=sys.stderr,
                flush=True,
            )
        if k >= n or (max_s is not None and k >= MIN_TOKENS and times[-1] - times[0] >= max_s):
            break
    return times


def more_repeats(done: int, wanted: int, elapsed_s: float, budget_s: float | None) -> bool:
    """Measure another answer? Not when the next one would end past the budget (a slow trial),
    but always up to MIN_REPEATS (or `wanted`, when that is fewer)."""
    if done >= wanted:
        return False
    if budget_s is None or done < min(MIN_REPEATS, wanted):
        return True
    return elapsed_s + elapsed_s / done <= budget_s


def _tokens(llm: Any, text: str | None) -> list[int] | None:
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True) if text else None


def measure(llm: Any, spec: dict[str, Any]) -> tuple[list[Sample], int, int]:
    """Run the workload on a loaded model; returns samples, prompt token count, generated count.

    Each repeat answers the measured (steady-state) prompt cold: the KV cache is reset, so the
    whole prompt is processed, as the app does on a turn that shares only the system prompt with
    the previous one. With a `next_prompt`, the first repeat is followed by the app's next turn
    (the prefix the two share is reused, as llama-cpp-python does in the app). With an
    `early_prompt`, one early-turn answer is measured at the end."""
    w = spec["workload"]
    prompt = _tokens(llm, w["prompt"]) or []
    next_prompt = _tokens(llm, w.get("next_prompt"))
    early_prompt = _tokens(llm, w.get("early_prompt"))
    n_ctx = llm.n_ctx()
    longest = max(len(prompt), len(next_prompt or []), len(early_prompt or [])) + w["max_tokens"]
    if longest > n_ctx:
        raise ValueError(f"workload needs {longest} tokens of context but n_ctx is {n_ctx}")
    temperature, top_p, n_gen = w["temperature"], w["top_p"], w["max_tokens"]
    answer_s, budget_s = w.get("max_answer_s"), w.get("max_measure_s")

    if w.get("warmup", True):
        phase(phases.WARMUP)  # the app's own warm-up after its load
        llm.reset()
        warm_tokens = llm.tokenize(b"Bonjour", add_bos=True, special=True)
        _answer(llm, warm_tokens, 2, temperature, top_p)

    samples: list[Sample] = []
    t_first = time.perf_counter()
    while more_repeats(len(samples), w["repeats"], time.perf_counter() - t_first, budget_s):
        i = len(samples)
        phase(phases.repeat(i + 1))
        llm.set_seed(int(w["seed"]) + i)
        llm.reset()  # n_tokens = 0: the whole prompt is processed again (cold)
        t0 = time.perf_counter()
        times = _answer(llm, prompt, n_gen, temperature, top_p, report=i == 0, max_s=answer_s)
        ttft = times[0] - t0
        warm_ms: float | None = None
        if next_prompt is not None and i == 0:
            phase(phases.NEXT_TURN)
            t1 = time.perf_counter()
            wt = _answer(llm, next_prompt, 1, temperature, top_p)
            warm_ms = (wt[0] - t1) * 1000.0
        samples.append(
            Sample(
                gen_tok_s=_rate(times),
                ttft_ms=ttft * 1000.0,
                prompt_tok_s=len(prompt) / ttft if ttft > 0 else 0.0,
                warm_ttft_ms=warm_ms,
                tokens=len(times),
            )
        )
    if early_prompt is not None:
        phase(phases.EARLY_TURN)
        llm.reset()
        t0 = time.perf_counter()
        times = _answer(llm, early_prompt, n_gen, temperature, top_p, max_s=answer_s)
        samples[0] = replace(
            samples[0], early_ttft_ms=(times[0] - t0) * 1000.0, early_gen_tok_s=_rate(times)
        )
    return samples, len(prompt), min(s.tokens or n_gen for s in samples)


def _rate(times: list[float]) -> float:
    gen_s = times[-1] - times[0]
    return (len(times) - 1) / gen_s if len(times) > 1 and gen_s > 0 else 0.0
