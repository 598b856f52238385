"""The workload a trial runs: Desktop-Mate's conversation, built from configs/workload.yaml.

The app sends, on every turn, its system prompt, the last `app.turns_kept` interactions of its
history and the new message. After the first `turns_kept` turns that history is full, and the
prompt a user waits on is the *steady-state turn*: the longest the app sends. It is the turn the
study measures (cold: the whole prompt after the load and the app's warm-up). The *next turn*
is the app's real following turn: the window has slid by one interaction, so it shares only the
system prompt with the measured one. The *early turn* is turn `early_turns + 1` of the same
conversation (a short history), kept as a reference figure.
"""

from __future__ import annotations

from collections.abc import Sequence
from string import Formatter
from typing import Any

from pydantic import Field, model_validator

from objectives.measure import MIN_REPEATS, MIN_TOKENS
from tuner.yaml_io import StrictModel

# Desktop-Mate's generation settings (data/config.json and its model call)
APP_TEMPERATURE = 0.7
APP_TOP_P = 0.9


class Template(StrictModel):
    system: str = "<|system|>\n{text}</|system|>\n"
    user: str = "<|user|>\n{text}</|user|>\n"
    assistant: str = "<|assistant|>\n{text}</|assistant|>\n"
    generation_prefix: str = "<|assistant|>\n"

    @model_validator(mode="after")
    def _placeholders(self) -> Template:
        """Only `{text}` is filled in (str.format): anything else would fail mid-study."""
        for name in ("system", "user", "assistant"):  # generation_prefix is used as is
            try:
                fields = [(f, s, c) for _, f, s, c in Formatter().parse(getattr(self, name))]
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}; write {{{{ }}}} for a literal brace") from None
            bad = [f for f, s, c in fields if f is not None and (f, s, c) != ("text", "", None)]
            if bad:
                raise ValueError(
                    f"{name} has the placeholder {{{bad[0]}}}; only {{text}} is filled in "
                    "(write {{ }} for a literal brace)"
                )
        return self


class Turn(StrictModel):
    user: str
    assistant: str


class NextTurn(StrictModel):
    assistant: str = Field(description="the reply the app stores for the measured message")
    user: str = Field(description="the user's following message (the next turn)")


class App(StrictModel):
    """What the app does with the conversation (data/config.json)."""

    turns_kept: int = Field(default=10, ge=1, le=200, description="context_limit")
    max_tokens: int = Field(default=512, ge=1, le=32768, description="the reply limit it asks")


class Workload(StrictModel):
    """The app's conversation plus the measurement protocol."""

    version: int = 2
    template: Template = Template()
    system_prompt: str = Field(min_length=1)
    app: App = App()
    history: tuple[Turn, ...] = ()
    message: str = Field(min_length=1)
    next_turn: NextTurn | None = None
    early_turns: int = Field(default=3, ge=0, description="history of the early-turn figure")
    gen_tokens: int = Field(default=128, ge=1, le=8192, description="generated per answer")
    temperature: float = Field(default=APP_TEMPERATURE, ge=0.0, le=5.0)
    top_p: float = Field(default=APP_TOP_P, gt=0.0, le=1.0)
    seed: int = 1234
    warmup: bool = True
    repeats: int = Field(default=3, ge=1, le=50)
    max_answer_s: float | None = Field(
        default=3.0,
        gt=0,
        description=f"stop an answer this long after its first token (>= {MIN_TOKENS} tokens)",
    )
    max_measure_s: float | None = Field(
        default=15.0,
        gt=0,
        description=f"no further answer when it would end past this (>= {MIN_REPEATS} answer)",
    )

    @model_validator(mode="after")
    def _check(self) -> Workload:
        if self.version != 2:
            raise ValueError(
                f"workload version {self.version} is not supported (this dm-tune reads version "
                "2: the app's steady-state conversation); start from configs/workload.yaml"
            )
        explicit = "early_turns" in self.model_fields_set
        if explicit and self.early_turns > 0 and self.early_turns >= len(self.history):
            raise ValueError(
                f"early_turns ({self.early_turns}) must be below the number of history "
                f"interactions ({len(self.history)})"
            )
        return self

    def render(self, turns: Sequence[tuple[str, str]], message: str) -> str:
        """The app's prompt: system prompt, the interactions given, the new message."""
        t = self.template
        parts = [t.system.format(text=self.system_prompt)]
        for user, reply in turns:
            parts.append(t.user.format(text=user))
            parts.append(t.assistant.format(text=reply))
        return "".join(parts) + t.user.format(text=message) + t.generation_prefix

    def _pairs(self) -> list[tuple[str, str]]:
        return [(h.user, h.assistant) for h in self.history]

    def kept(self, turns: int | None = None) -> list[tuple[str, str]]:
        """The last `turns` interactions (the app's window: `app.turns_kept`)."""
        n = self.app.turns_kept if turns is None else turns
        pairs = self._pairs()
        return pairs[max(0, len(pairs) - n) :] if n > 0 else []

    def prompt(self, turns: int | None = None) -> str:
        """The steady-state turn (or one with only the last `turns` interactions)."""
        return self.render(self.kept(turns), self.message)

    def next_prompt(self, turns: int | None = None) -> str | None:
        """The app's next turn: the window slides by the measured interaction."""
        if self.next_turn is None:
            return None
        n = self.app.turns_kept if turns is None else turns
        pairs = [*self._pairs(), (self.message, self.next_turn.assistant)]
        return self.render(pairs[max(0, len(pairs) - n) :] if n > 0 else [], self.next_turn.user)

    def early_prompt(self) -> str | None:
        """Turn `early_turns + 1`: the first interactions, then the next one's message."""
        if self.early_turns <= 0 or self.early_turns >= len(self.history):
            return None
        pairs = self._pairs()
        return self.render(pairs[: self.early_turns], pairs[self.early_turns][0])

    def worst_case_skeleton(self) -> str:
        """The steady-state prompt with every kept reply empty: its tokens plus
        `turns_kept` x `max_tokens` (full-length replies) bound the longest prompt the app
        can send with this history's messages."""
        return self.render([(u, "") for u, _ in self.kept()], self.message)

    def spec(
        self,
        repeats: int | None = None,
        *,
        turns: int | None = None,
        next_turn: bool = False,
        early_turn: bool = False,
    ) -> dict[str, Any]:
        """The JSON-able dict a trial child measures (objectives/measure.py reads it).

        `turns` trims the history (a profile whose n_ctx can't hold the steady state);
        `next_turn` / `early_turn` also measure those turns (warm latency, confirmation)."""
        return {
            "prompt": self.prompt(turns),
            "next_prompt": self.next_prompt(turns) if next_turn else None,
            "early_prompt": self.early_prompt() if early_turn else None,
            "history_turns": len(self.kept(turns)),
            "max_tokens": self.gen_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "warmup": self.warmup,
            "repeats": repeats or self.repeats,
            "max_answer_s": self.max_answer_s,
            "max_measure_s": self.max_measure_s,
        }
