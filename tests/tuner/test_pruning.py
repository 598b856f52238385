from __future__ import annotations

from objectives.launch import Watch
from tuner.study import Point, decide

PTS = [
    Point(0, 5000.0, 100.0, 200.0),
    Point(1, 1000.0, 10.0, 3000.0),
    Point(2, 6000.0, 90.0, 150.0),  # more VRAM than the watched trial, even with slack
]


def w(
    *,
    elapsed: float = 1.0,
    tokens: int = 0,
    ttft: float | None = None,
    gen: float = 0.0,
    vram: float | None = 5000.0,
) -> Watch:
    return Watch("repeat 1", elapsed, tokens, ttft, gen, vram)


def test_nothing_is_pruned_before_the_study_has_enough_points() -> None:
    assert decide(w(elapsed=999), PTS[:2]) is None


def test_slow_prompt_is_pruned_against_trials_with_no_more_vram() -> None:
    assert decide(w(elapsed=5.0), PTS) is None  # under the 10 s floor
    reason = decide(w(elapsed=11.0), PTS)
    assert reason is not None and "trial 2" not in reason  # trial 2 uses more VRAM
    assert "no first token after 11 s" in reason


def test_dominated_generation_is_pruned_after_8_tokens() -> None:
    slow = w(tokens=17, ttft=0.3, gen=1.0)  # 16 tok/s, 300 ms
    assert decide(slow, PTS) is not None
    assert decide(w(tokens=8, ttft=0.3, gen=0.5), PTS) is not None  # a capped answer: judged
    assert decide(w(tokens=4, ttft=0.3, gen=0.25), PTS) is None  # too early to judge


def test_small_settings_survive_when_nothing_smaller_was_measured() -> None:
    tiny = w(tokens=17, ttft=5.0, gen=4.0, vram=500.0)  # slow, but uses the least VRAM
    assert decide(tiny, PTS) is None


def test_a_fast_trial_is_never_pruned() -> None:
    assert decide(w(tokens=33, ttft=0.1, gen=0.3), PTS) is None
