"""The context floor from token counts (the numbers below are inputs, not measurements)."""

from __future__ import annotations

import pytest

from tuner.errors import UserError
from tuner.space import parse_min_ctx, resolve_floor

CHOICES = (1024, 2048, 4096, 8192)
BY_TURNS = (472, 587, 723, 870, 1020, 1175, 1326, 1503, 1640, 1776, 1883)


def _floor(wanted: int | str | None, trained: int | None = 8192, choices=CHOICES):  # type: ignore[no-untyped-def]
    return resolve_floor(
        parse_min_ctx(None if wanted is None else str(wanted)),
        turns_kept=10,
        max_tokens=512,
        steady_prompt_tokens=1890,
        worst_skeleton_tokens=1018,
        prompt_tokens_by_turns=BY_TURNS,
        choices=choices,
        trained_ctx=trained,
    )


def test_default_floor_is_the_smallest_choice_holding_the_steady_state() -> None:
    f = _floor(None)
    assert f.steady_state_tokens == 1890 + 512
    assert f.worst_case_tokens == 1018 + 11 * 512
    assert (f.min_ctx, f.min_ctx_rule) == (4096, "steady")
    assert f.to_profile() == {
        "turns_kept": 10,
        "max_tokens": 512,
        "steady_state_tokens": 2402,
        "worst_case_tokens": 6650,
        "min_ctx": 4096,
        "min_ctx_rule": "steady",
    }


def test_worst_and_user_floors() -> None:
    assert (_floor("worst").min_ctx, _floor("worst").min_ctx_rule) == (8192, "worst")
    assert (_floor(3000).min_ctx, _floor(3000).min_ctx_rule) == (3000, "user")


def test_turns_that_fit_a_smaller_context() -> None:
    f = _floor(None)
    assert f.turns_that_fit(2048, 128) == 10  # 1883 + 128 <= 2048
    assert f.turns_that_fit(1024, 128) == 3  # 870 + 128 <= 1024 < 1020 + 128
    assert f.turns_that_fit(256, 128) == -1


@pytest.mark.parametrize(
    ("wanted", "trained", "choices", "match"),
    [
        (2000, 8192, CHOICES, "below what the app needs: the app's steady-state turn needs 2402"),
        (9000, 8192, CHOICES, "above every n_ctx choice"),
        (8192, 4096, CHOICES, "above the model's trained context \\(4096 tokens\\)"),
        (None, 2048, CHOICES, "the steady context floor 4096 is above the model's trained"),
        (None, 8192, (1024, 2048), "the largest n_ctx choice is 2048"),
        ("worst", 8192, (4096,), "the worst case needs 6650 tokens"),
    ],
)
def test_floors_that_cant_be_met_are_explained(
    wanted: int | str | None, trained: int, choices: tuple[int, ...], match: str
) -> None:
    with pytest.raises(UserError, match=match):
        _floor(wanted, trained, choices)


@pytest.mark.parametrize("text", ["abc", "4k", "-5", "0"])
def test_bad_min_ctx_text(text: str) -> None:
    with pytest.raises(UserError, match="--min-ctx"):
        parse_min_ctx(text)
