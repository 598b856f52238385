"""Desktop-Mate's built-in profiles (configs/baselines.yaml), measured first in every study, and
dm-tune's own starting points (a profile with some knobs changed), measured right after them.

A start point may set `n_gpu_layers: fit`: the most layers whose predicted VRAM need is within
the budget (tuner.vram), for models larger than the budget, where every profile that
offloads everything is skipped unloaded. It is enqueued only where fitting changes something
(the model does not fit whole) and where the build can offload. `n_threads: all` is every
logical core (with layers in RAM, the CPU side decides the speed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, model_validator

from tuner.errors import UserError
from tuner.space._search_space import SearchSpace, key_of
from tuner.yaml_io import StrictModel, load_model


class BaselineProfile(StrictModel):
    n_gpu_layers: int = Field(ge=-1)
    n_ctx: int = Field(gt=0)
    n_batch: int = Field(gt=0)
    n_threads: int = Field(gt=0)
    use_mlock: bool = False


class StartPoint(StrictModel):
    """A profile with some knobs set: where the search starts besides the app's own settings."""

    model_config = ConfigDict(populate_by_name=True)  # merged with StrictModel's

    from_: str = Field(alias="from", min_length=1)
    gpu_only: bool = True  # enqueued only where the build can offload to a GPU
    set: dict[str, bool | int | str] = Field(min_length=1)


class BaselinesConfig(StrictModel):
    version: int = 1
    profiles: dict[str, BaselineProfile] = Field(default_factory=dict)
    starts: dict[str, StartPoint] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_profiles(self) -> BaselinesConfig:
        if self.version != 1:
            raise ValueError(
                f"baselines version {self.version} is not supported (this dm-tune reads "
                "version 1); start from configs/baselines.yaml"
            )
        for name, start in self.starts.items():
            if start.from_ not in self.profiles:
                raise ValueError(f"start {name!r}: no profile named {start.from_!r}")
        return self


def _load(path: Path | None) -> BaselinesConfig:
    return BaselinesConfig() if path is None else load_model(path, BaselinesConfig)


def load_baselines(path: Path | None) -> dict[str, dict[str, object]]:
    cfg = _load(path)
    return {name: p.model_dump() for name, p in cfg.profiles.items()}


def load_starts(path: Path | None, *, gpu_offload: bool) -> dict[str, dict[str, object]]:
    """Each start point's settings (its profile with its knobs set), for this build."""
    cfg = _load(path)
    out: dict[str, dict[str, object]] = {}
    for name, start in cfg.starts.items():
        if start.gpu_only and not gpu_offload:
            continue
        out[name] = {**cfg.profiles[start.from_].model_dump(), **start.set}
    return out


def _kind(knob: str) -> str:
    """What a knob's value must be, from its search-space entry: int, bool or a KV type."""
    from tuner.space._search_space import Flag, IntChoices, IntRange, SearchSpaceConfig

    ann = SearchSpaceConfig.model_fields[knob].annotation
    return "int" if ann in (IntRange, IntChoices) else "bool" if ann is Flag else "kv"


def check_start_knobs(starts: dict[str, dict[str, object]], known: set[str]) -> None:
    """Unknown knobs and wrong types, refused before the study exists (not at enqueueing)."""
    from objectives.llama_params import KV_TYPES

    for name, params in starts.items():
        params = {k: v for k, v in params.items() if (k, v) not in WORDS}
        unknown = sorted(set(params) - known)
        if unknown:
            raise UserError(
                f"baselines file: start {name!r} sets unknown knob(s) {', '.join(unknown)}; "
                f"use knobs of search_space.yaml"
            )
        for knob, value in params.items():
            kind = _kind(knob)
            if kind == "int":
                ok, want = isinstance(value, int) and not isinstance(value, bool), "an integer"
            elif kind == "bool":
                ok, want = isinstance(value, bool), "true or false"
            else:
                ok, want = value in KV_TYPES, f"one of {', '.join(KV_TYPES)}"
            if not ok:
                raise UserError(
                    f"baselines file: start {name!r} sets {knob} to {value!r}; it must be {want}"
                )


FIT = "fit"  # n_gpu_layers of a start point: as many as the VRAM budget holds
ALL = "all"  # n_threads of a start point: every logical core
WORDS = {("n_gpu_layers", FIT), ("n_threads", ALL)}
# (settings) -> the most GPU layers within the VRAM budget (VramGuard.most_layers)
LayerFit = Callable[[dict[str, Any]], int]


def starting_trials(
    space: SearchSpace,
    baselines: dict[str, dict[str, Any]],
    starts: dict[str, dict[str, Any]],
    fit: LayerFit | None = None,
) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """What the study measures before sampling: the app's profiles, then dm-tune's start points
    (skipped where they come out the same as a profile on this machine); (params, its role:
    {"baseline": name} or {"start": name}, tuner.study.enqueue).

    A profile keeps an n_ctx below the context floor (the study measures it as the app runs it,
    as infeasible); a start point is raised to the floor (it is a suggestion of dm-tune's).
    A start point with `n_gpu_layers: fit` gets `fit`'s layer count, and is left out without
    `fit` (no VRAM prediction: a CPU build, or no NVIDIA GPU) or where the model fits whole."""
    out: list[tuple[dict[str, Any], dict[str, str]]] = []
    seen: set[str] = set()
    for kind, group in (("baseline", baselines), ("start", starts)):
        for name, profile in group.items():
            fitted = profile.get("n_gpu_layers") == FIT
            if fitted and fit is None:
                continue
            profile = {**profile, **({"n_gpu_layers": -1} if fitted else {})}
            if profile.get("n_threads") == ALL:
                profile["n_threads"] = space.machine.logical_cores
            params = space.fit_baseline(profile)
            if fitted and fit is not None:
                layers = fit(params)
                if layers >= int(params["n_gpu_layers"]):
                    continue  # the whole model fits: the other start points cover it
                params["n_gpu_layers"] = layers
            if kind == "start" and int(params["n_ctx"]) < space.machine.min_ctx:
                params["n_ctx"] = min(space.n_ctx_choices)
            if kind == "start" and key_of(params) in seen:
                continue
            seen.add(key_of(params))
            out.append((params, {kind: name}))
    return out
