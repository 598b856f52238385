"""Time caps for slow settings: fewer tokens and answers, never below the minimums."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectives.launch import ColdLauncher, TrialSpec
from objectives.measure import MIN_REPEATS, MIN_TOKENS, more_repeats


def test_repeats_stop_when_the_next_answer_would_end_past_the_budget() -> None:
    assert more_repeats(2, 3, elapsed_s=8.0, budget_s=15.0)  # 8 + 4 <= 15
    assert not more_repeats(2, 3, elapsed_s=12.0, budget_s=15.0)  # 12 + 6 > 15
    assert not more_repeats(3, 3, elapsed_s=1.0, budget_s=15.0)  # all done


def test_repeats_never_fall_below_the_minimum_or_without_a_budget() -> None:
    assert more_repeats(0, 3, elapsed_s=0.0, budget_s=0.001)
    assert more_repeats(MIN_REPEATS - 1, 3, elapsed_s=100.0, budget_s=0.001)
    assert not more_repeats(1, 1, elapsed_s=100.0, budget_s=0.001)  # one wanted: one done
    assert more_repeats(4, 5, elapsed_s=1e6, budget_s=None)


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
