"""The search space from configs/search_space.yaml, resolved for one machine and model.

Sampling goes through Optuna's suggest API; `normalize` maps any settings (sampled, a baseline,
a user profile) to the canonical form llama.cpp will actually run, so equal behaviour = equal key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
from pydantic import Field, model_validator

from objectives.llama_params import KV_TYPES
from tuner.errors import UserError
from tuner.yaml_io import StrictModel, load_model

Auto = Literal["auto"]
LLAMA_DEFAULT_UBATCH = 512  # llama_cpp.Llama(n_ubatch=512)
KV_KNOBS = ("type_k", "type_v")  # the KV cache types: quantized, they change the answers


class IntRange(StrictModel):
    enabled: bool = True
    low: int | Auto = 1
    high: int | Auto = "auto"

    @model_validator(mode="after")
    def _order(self) -> IntRange:
        if isinstance(self.low, int) and isinstance(self.high, int) and self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if isinstance(self.low, int) and self.low < 0:
            raise ValueError("low must be >= 0")
        return self


class IntChoices(StrictModel):
    enabled: bool | Auto = True
    choices: tuple[int, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _positive(self) -> IntChoices:
        if any(c <= 0 for c in self.choices):
            raise ValueError("choices must be positive integers")
        return self


class Flag(StrictModel):
    enabled: bool | Auto = True


class KvChoices(StrictModel):
    enabled: bool = False
    choices: tuple[str, ...] = ("f16", "q8_0", "q4_0")
    quality_affecting: bool = True  # a tier setting it (not f16) is listed so in the profile

    @model_validator(mode="after")
    def _known(self) -> KvChoices:
        bad = [c for c in self.choices if c not in KV_TYPES]
        if bad:
            raise ValueError(f"unknown KV cache type {bad[0]!r}; use one of {', '.join(KV_TYPES)}")
        return self


class SearchSpaceConfig(StrictModel):
    version: int = 1
    n_threads: IntRange = IntRange()
    n_batch: IntChoices = IntChoices(choices=(32, 64, 128, 256, 512, 1024))
    n_ctx: IntChoices = IntChoices(choices=(1024, 2048, 4096, 8192))
    use_mlock: Flag = Flag()
    n_gpu_layers: IntRange = IntRange(low=0)
    flash_attn: Flag = Flag(enabled="auto")
    n_ubatch: IntChoices = IntChoices(enabled="auto", choices=(64, 128, 256, 512, 1024))
    offload_kqv: Flag = Flag(enabled=False)
    use_mmap: Flag = Flag(enabled=False)
    n_threads_batch: IntRange = IntRange(enabled=False)
    type_k: KvChoices = KvChoices()
    type_v: KvChoices = KvChoices()

    def quality_affecting(self) -> tuple[str, ...]:
        """The knobs whose flag is set, enabled or not (a start point may set a knob the search
        leaves alone): the profile's `quality_affecting` lists those its tiers set."""
        return tuple(name for name in KV_KNOBS if getattr(self, name).quality_affecting)

    @model_validator(mode="after")
    def _version(self) -> SearchSpaceConfig:
        if self.version != 1:
            raise ValueError(
                f"search space version {self.version} is not supported (this dm-tune reads "
                "version 1); start from configs/search_space.yaml"
            )
        return self


def load_search_space_config(path: Path) -> SearchSpaceConfig:
    return load_model(path, SearchSpaceConfig)


@dataclass(frozen=True)
class Machine:
    """What the space must be fitted to."""

    logical_cores: int
    layers: int  # offloadable layers = block_count + 1
    gpu_offload: bool
    min_ctx: int  # the context floor (tuner/space/_context_floor.py): no n_ctx below it is sampled
    trained_ctx: int | None = None


@dataclass(frozen=True)
class SearchSpace:
    config: SearchSpaceConfig
    machine: Machine
    n_ctx_choices: tuple[int, ...]
    notices: tuple[str, ...]

    def _bounds(self, r: IntRange, auto: int) -> tuple[int, int]:
        low = auto if r.low == "auto" else r.low
        high = auto if r.high == "auto" else r.high
        return int(low), int(min(high, auto))

    def flash_attn_searched(self) -> bool:
        e = self.config.flash_attn.enabled
        return self.machine.gpu_offload if e == "auto" else bool(e)

    def n_ubatch_searched(self) -> bool:
        e = self.config.n_ubatch.enabled
        return self.machine.gpu_offload if e == "auto" else bool(e)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one candidate and return the normalized Llama(...) keyword arguments."""
        c, m = self.config, self.machine
        p: dict[str, Any] = {}
        lo, hi = self._bounds(c.n_threads, m.logical_cores)
        p["n_threads"] = trial.suggest_int("n_threads", lo, hi)
        p["n_batch"] = trial.suggest_categorical("n_batch", list(c.n_batch.choices))
        p["n_ctx"] = trial.suggest_categorical("n_ctx", list(self.n_ctx_choices))
        if c.use_mlock.enabled:
            p["use_mlock"] = trial.suggest_categorical("use_mlock", [False, True])
        if m.gpu_offload:
            lo, hi = self._bounds(c.n_gpu_layers, m.layers)
            p["n_gpu_layers"] = trial.suggest_int("n_gpu_layers", lo, hi)
        else:
            p["n_gpu_layers"] = trial.suggest_int("n_gpu_layers", 0, 0)
        if self.flash_attn_searched():
            p["flash_attn"] = trial.suggest_categorical("flash_attn", [False, True])
        if self.n_ubatch_searched():
            p["n_ubatch"] = trial.suggest_categorical("n_ubatch", list(c.n_ubatch.choices))
        for flag in ("offload_kqv", "use_mmap"):
            if getattr(c, flag).enabled is True:
                p[flag] = trial.suggest_categorical(flag, [False, True])
        if c.n_threads_batch.enabled:
            lo, hi = self._bounds(c.n_threads_batch, m.logical_cores)
            p["n_threads_batch"] = trial.suggest_int("n_threads_batch", lo, hi)
        for kv in ("type_k", "type_v"):
            if getattr(c, kv).enabled:
                p[kv] = trial.suggest_categorical(kv, list(getattr(c, kv).choices))
        return self.normalize(p)

    def normalize(self, params: dict[str, Any]) -> dict[str, Any]:
        """Canonical settings: what llama.cpp will really do with these values."""
        m = self.machine
        p = dict(params)
        layers = int(p.get("n_gpu_layers", 0))
        if not m.gpu_offload:
            layers = 0
        elif layers < 0 or layers > m.layers:
            layers = m.layers  # -1, 35, 43, 99... all mean "everything" on a 33-layer model
        p["n_gpu_layers"] = layers
        if "n_threads" in p:
            p["n_threads"] = max(1, min(int(p["n_threads"]), m.logical_cores))
        if "n_threads_batch" in p:
            p["n_threads_batch"] = max(1, min(int(p["n_threads_batch"]), m.logical_cores))
        if "n_ubatch" in p and "n_batch" in p:
            p["n_ubatch"] = min(int(p["n_ubatch"]), int(p["n_batch"]))
        if p.get("type_v", "f16") != "f16" and not p.get("flash_attn", False):
            p["type_v"] = "f16"  # llama.cpp refuses a quantized V cache without flash attention
        if not m.gpu_offload:
            p.pop("offload_kqv", None)
        return p

    def fit_baseline(self, params: dict[str, Any]) -> dict[str, Any]:
        """A profile's settings moved onto this space's grid so it can be enqueued."""
        p = self.normalize(params)
        p["n_batch"] = _nearest(int(p["n_batch"]), self.config.n_batch.choices)
        ctx = int(p["n_ctx"])
        fits = [c for c in self.n_ctx_choices if c >= ctx]
        if ctx >= self.machine.min_ctx or not fits:
            p["n_ctx"] = min(fits) if fits else max(self.n_ctx_choices)
        # else: below the context floor, kept as the app runs it (measured, never feasible)
        if "use_mlock" in p and not self.config.use_mlock.enabled:
            p.pop("use_mlock")
        if not self.flash_attn_searched():
            p.pop("flash_attn", None)
        else:
            p.setdefault("flash_attn", False)  # the app never sets it: llama.cpp's default
        if not self.n_ubatch_searched():
            p.pop("n_ubatch", None)
        elif "n_ubatch" in p:
            ub = _nearest(int(p["n_ubatch"]), self.config.n_ubatch.choices)
            p["n_ubatch"] = min(ub, p["n_batch"])
        else:
            p["n_ubatch"] = min(LLAMA_DEFAULT_UBATCH, p["n_batch"])  # what the profile gets
        return p


def _nearest(value: int, choices: tuple[int, ...]) -> int:
    return min(choices, key=lambda c: (abs(c - value), -c))


def key_of(params: dict[str, Any]) -> str:
    """Stable identity of normalized settings (equal key = same behaviour)."""
    return ",".join(f"{k}={params[k]}" for k in sorted(params))


def resolve(config: SearchSpaceConfig, machine: Machine) -> SearchSpace:
    """Fit the configured space to the machine and model, or explain why it can't be."""
    notices: list[str] = []
    choices = tuple(sorted(set(config.n_ctx.choices)))
    usable = tuple(c for c in choices if c >= machine.min_ctx)
    if not usable:
        raise UserError(
            f"the context floor is {machine.min_ctx} tokens but the largest n_ctx choice "
            f"is {choices[-1]}; add a larger choice to search_space.yaml or shorten the workload"
        )
    if len(usable) < len(choices):
        dropped = ", ".join(str(c) for c in choices if c not in usable)
        notices.append(
            f"n_ctx {dropped} not searched: below the context floor ({machine.min_ctx}), the "
            "app's conversation would overflow it"
        )
    if machine.trained_ctx:
        within = tuple(c for c in usable if c <= machine.trained_ctx)
        if within and len(within) < len(usable):
            notices.append(
                f"n_ctx above the model's trained context ({machine.trained_ctx}) dropped"
            )
            usable = within
    _check_ranges(config, machine)
    if not machine.gpu_offload:
        notices.append(
            "n_gpu_layers fixed to 0: the installed llama-cpp-python cannot offload to a GPU "
            "(see `dm-tune doctor`)"
        )
    return SearchSpace(config, machine, usable, tuple(notices))


def _check_ranges(config: SearchSpaceConfig, machine: Machine) -> None:
    """A range whose low end is above what this machine has ('auto', or a high capped by it)
    would fail at its first sampled trial: refuse it before the study starts."""
    ranges = [("n_threads", machine.logical_cores, "logical cores")]
    if config.n_threads_batch.enabled:
        ranges.append(("n_threads_batch", machine.logical_cores, "logical cores"))
    if machine.gpu_offload:
        ranges.append(("n_gpu_layers", machine.layers, "offloadable layers in the model"))
    for name, most, what in ranges:
        r: IntRange = getattr(config, name)
        low = most if r.low == "auto" else r.low
        high = most if r.high == "auto" else min(r.high, most)
        if low > high:
            raise UserError(
                f"search space: {name} low {low} is above the {most} {what} of this machine "
                f"and model; lower {name}.low to at most {most} in the search space file"
            )
