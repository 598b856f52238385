"""Desktop-Mate's built-in profiles (configs/baselines.yaml), measured first in every study."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tuner.yaml_io import load_model


class BaselineProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    n_gpu_layers: int = Field(ge=-1)
    n_ctx: int = Field(gt=0)
    n_batch: int = Field(gt=0)
    n_threads: int = Field(gt=0)
    use_mlock: bool = False


class BaselinesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    profiles: dict[str, BaselineProfile] = {}


def load_baselines(path: Path | None) -> dict[str, dict[str, object]]:
    if path is None:
        return {}
    cfg = load_model(path, BaselinesConfig)
    return {name: p.model_dump() for name, p in cfg.profiles.items()}
