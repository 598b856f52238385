"""The workload a trial runs: a Desktop-Mate chat turn built from configs/workload.yaml."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Template(_Strict):
    system: str = "<|system|>\n{text}</|system|>\n"
    user: str = "<|user|>\n{text}</|user|>\n"
    assistant: str = "<|assistant|>\n{text}</|assistant|>\n"
    generation_prefix: str = "<|assistant|>\n"


class Turn(_Strict):
    user: str
    assistant: str


class NextTurn(_Strict):
    assistant: str = Field(description="the reply the app stores for the measured message")
    user: str = Field(description="the user's following message (warm latency)")


class Workload(_Strict):
    """One chat turn as the app sends it, plus the measurement protocol."""

    version: int = 1
    template: Template = Template()
    system_prompt: str = Field(min_length=1)
    history: tuple[Turn, ...] = ()
    message: str = Field(min_length=1)
    next_turn: NextTurn | None = None
    max_tokens: int = Field(default=128, ge=1, le=8192)
    temperature: float = Field(default=0.7, ge=0.0, le=5.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    seed: int = 1234
    warmup: bool = True
    repeats: int = Field(default=3, ge=1, le=50)
    max_answer_s: float | None = Field(
        default=3.0,
        gt=0,
        description="stop an answer this long after its first token (>= 8 tokens)",
    )
    max_measure_s: float | None = Field(
        default=15.0,
        gt=0,
        description="no further answer when it would end past this (>= 1 answer)",
    )

    def _turns_text(self) -> str:
        t = self.template
        parts = [t.system.format(text=self.system_prompt)]
        for turn in self.history:
            parts.append(t.user.format(text=turn.user))
            parts.append(t.assistant.format(text=turn.assistant))
        return "".join(parts)

    def prompt(self) -> str:
        """The prompt of the measured answer (cold: processed whole after load)."""
        t = self.template
        return self._turns_text() + t.user.format(text=self.message) + t.generation_prefix

    def spec(self, repeats: int | None = None) -> dict[str, Any]:
        """The JSON-able dict a trial child measures (objectives/measure.py reads it)."""
        return {
            "prompt": self.prompt(),
            "next_prompt": self.next_prompt(),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "warmup": self.warmup,
            "repeats": repeats or self.repeats,
            "max_answer_s": self.max_answer_s,
            "max_measure_s": self.max_measure_s,
        }

    def next_prompt(self) -> str | None:
        """The next turn's prompt: `prompt()`'s text, then the reply and a new message."""
        if self.next_turn is None:
            return None
        t = self.template
        return (
            self._turns_text()
            + t.user.format(text=self.message)
            + t.assistant.format(text=self.next_turn.assistant)
            + t.user.format(text=self.next_turn.user)
            + t.generation_prefix
        )
