"""The context floor: the smallest `n_ctx` the app's conversation needs, never crossed.

Desktop-Mate has no overflow handling: once its prompt plus the reply it asks for no longer fits
`n_ctx`, llama-cpp-python refuses the prompt (or cuts the reply), and since the history is
persisted every later message fails the same way. So the study never samples, and the profile
never exports, an `n_ctx` below the floor, however fast it measured.

Token counts come from the model's own tokenizer (the probe child tokenizes the workload):
- steady state: the longest steady-state prompt (the measured turn and the app's next turn, with
  the last `turns_kept` interactions) + the app's `max_tokens`;
- worst case: the steady-state prompt with every kept reply `max_tokens` long, + `max_tokens`.
The default floor is the smallest `n_ctx` choice of the search space that holds the steady state;
`--min-ctx N` sets it to N, `--min-ctx worst` to the smallest choice that holds the worst case.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from tuner.errors import UserError

Rule = Literal["steady", "worst", "user"]


@dataclass(frozen=True)
class ContextFloor:
    turns_kept: int
    max_tokens: int  # the app's reply limit
    steady_state_tokens: int
    worst_case_tokens: int
    min_ctx: int
    min_ctx_rule: Rule
    # prompt tokens of the measured turn with its last k interactions, k = 0..turns_kept
    prompt_tokens_by_turns: tuple[int, ...] = ()

    def turns_that_fit(self, n_ctx: int, gen_tokens: int) -> int:
        """Most interactions of history a measured turn can carry within `n_ctx` (-1: none)."""
        fit = -1
        for k, n in enumerate(self.prompt_tokens_by_turns):
            if n + gen_tokens <= n_ctx:
                fit = k
        return fit

    def to_profile(self) -> dict[str, Any]:
        """The profile's `conversation` mapping (tuner.profile.Conversation)."""
        d = asdict(self)
        d.pop("prompt_tokens_by_turns")
        return d


def parse_min_ctx(text: str | None) -> int | Literal["worst"] | None:
    """--min-ctx: a number of tokens, `worst`, or nothing (the default floor)."""
    if text is None or text == "":
        return None
    if text.strip().lower() == "worst":
        return "worst"
    try:
        value = int(text)
    except ValueError:
        raise UserError(
            f"--min-ctx must be a number of tokens or 'worst' (got {text!r}); e.g. --min-ctx 4096"
        ) from None
    if value < 1:
        raise UserError(f"--min-ctx must be at least 1 token (got {value})")
    return value


def resolve_floor(
    wanted: int | Literal["worst"] | None,
    *,
    turns_kept: int,
    max_tokens: int,
    steady_prompt_tokens: int,
    worst_skeleton_tokens: int,
    prompt_tokens_by_turns: Sequence[int],
    choices: Sequence[int],
    trained_ctx: int | None,
) -> ContextFloor:
    """The floor for this model and workload, or a UserError naming the fix."""
    steady = steady_prompt_tokens + max_tokens
    worst = worst_skeleton_tokens + (turns_kept + 1) * max_tokens
    need = f"the app's steady-state turn needs {steady} tokens ({steady_prompt_tokens} of prompt"
    need += f" + a {max_tokens}-token reply)"
    ordered = sorted(set(choices))
    rule: Rule
    if wanted is None or wanted == "worst":
        target, rule = (steady, "steady") if wanted is None else (worst, "worst")
        fits = [c for c in ordered if c >= target]
        if not fits:
            what = need if wanted is None else f"the worst case needs {worst} tokens"
            raise UserError(
                f"{what}, but the largest n_ctx choice is {ordered[-1]}; add a larger choice "
                "to search_space.yaml or shorten the workload's history"
            )
        floor = fits[0]
    else:
        floor, rule = wanted, "user"
        if floor < steady:
            raise UserError(
                f"--min-ctx {floor} is below what the app needs: {need}; use --min-ctx "
                f"{steady} or more (or leave it out)"
            )
        if not any(c >= floor for c in ordered):
            raise UserError(
                f"--min-ctx {floor} is above every n_ctx choice (largest {ordered[-1]}); add a "
                "larger choice to search_space.yaml"
            )
    if trained_ctx and floor > trained_ctx:
        how = "--min-ctx" if rule == "user" else f"the {rule} context floor"
        raise UserError(
            f"{how} {floor} is above the model's trained context ({trained_ctx} tokens); "
            f"{need}: use a model trained on a longer context, or a shorter history"
        )
    return ContextFloor(
        turns_kept=turns_kept,
        max_tokens=max_tokens,
        steady_state_tokens=steady,
        worst_case_tokens=worst,
        min_ctx=floor,
        min_ctx_rule=rule,
        prompt_tokens_by_turns=tuple(prompt_tokens_by_turns),
    )
