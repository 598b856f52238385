"""Time caps for slow settings: fewer tokens and answers, never below the minimums."""

from __future__ import annotations

from pathlib import Path

import pytest

import objectives.measure
from objectives.launch import ColdLauncher, TrialSpec
from objectives.measure import MIN_REPEATS, MIN_TOKENS, more_repeats


def test_repeats_stop_when_the_next_answer_would_end_past_the_budget() -> None:
    assert more_repeats(2, 3, elapsed_s=8.0, budget_s=15.0)  # 8 + 4 <= 15
    assert not more_repeats(2, 3, elapsed_s=12.0, budget_s=15.0)  # 12 + 6 > 15
    assert not more_repeats(3, 3, elapsed_s=1.0, budget_s=15.0)  # all done


def _answers(wanted: int, budget_s: float | None, answer_s: float = 10.0) -> int:
    """How many answers a trial measures when each takes `answer_s` (the child's loop)."""
    done = 0
    while more_repeats(done, wanted, elapsed_s=done * answer_s, budget_s=budget_s):
        done += 1
    return done


@pytest.mark.parametrize("minimum", [MIN_REPEATS, 3])
def test_a_slow_trial_still_measures_the_minimum_of_answers(
    monkeypatch: pytest.MonkeyPatch, minimum: int
) -> None:
    """The rule, whatever the minimum is set to (today's and a larger one)."""
    monkeypatch.setattr(objectives.measure, "MIN_REPEATS", minimum)
    assert _answers(5, budget_s=0.001) == minimum  # every answer is over the budget
    assert _answers(5, budget_s=45.0) == max(minimum, 4)  # a 5th would end at 50 s
    assert _answers(1, budget_s=0.001) == 1  # fewer wanted than the minimum: what is wanted
    assert _answers(5, budget_s=None) == 5  # no budget: every answer wanted


@pytest.mark.slow
def test_a_capped_trial_measures_fewer_tokens_and_answers(demo_model: Path) -> None:
    workload = {
        "prompt": "<|user|>\nBonjour, tu vas bien ?</|user|>\n<|assistant|>\n",
        "next_prompt": None,
        "max_tokens": 64,
        "temperature": 0.7,
        "top_p": 0.9,
        "seed": 1,
        "warmup": True,
        "repeats": 5,
        "max_answer_s": 1e-4,  # every answer is "slow": stops at MIN_TOKENS
        "max_measure_s": 1e-4,  # and so is the trial: MIN_REPEATS answers
    }
    spec = TrialSpec.of(demo_model, {"n_threads": 2, "n_ctx": 256, "n_gpu_layers": 0}, workload)
    res = ColdLauncher().run(spec, 120)
    assert res.status == "ok", res.reason + res.stderr_tail
    m = res.metrics
    assert m is not None
    assert len(m.samples) == MIN_REPEATS
    assert [s.tokens for s in m.samples] == [MIN_TOKENS] * MIN_REPEATS
    assert m.n_generated == MIN_TOKENS and m.gen_tok_s > 0
