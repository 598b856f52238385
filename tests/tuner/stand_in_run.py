"""A whole run's `Context` for `run_study` with stand-in trial children: the real search space,
workload, storage check and context floor; the model, machine and probe are made-up values (no
GGUF is read, no llama.cpp probed: the stand-in children never open the model)."""

from __future__ import annotations

from pathlib import Path

from objectives.workload import Workload
from tests.conftest import stand_in
from tuner.machine import Hardware, Probe
from tuner.space import ContextFloor, Machine, load_search_space_config, resolve
from tuner.study import RunSettings, check_storage
from tuner.study._prepare import Context
from tuner.vram import GGUFInfo
from tuner.yaml_io import load_model

STUDY = "loop"


def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/dm-tune.db"


def run_context(tmp_path: Path, workload: Path, space: Path, *, trials: int) -> Context:
    """A CPU-only run of `trials` trials into a SQLite file in `tmp_path` (study 'loop')."""
    machine = Machine(logical_cores=2, layers=31, gpu_offload=False, min_ctx=256)
    model = GGUFInfo(
        path=tmp_path / "stand-in.gguf",
        size_bytes=1000,
        architecture="llama",
        block_count=30,
        context_length=2048,
        embedding_length=None,
        head_count=None,
        head_count_kv=None,
        key_length=None,
        value_length=None,
        vocab_size=None,
        file_type=None,
        name=None,
        quantization="Q4_1",
    )
    settings = RunSettings(
        trials=trials,
        storage=storage_url(tmp_path),
        study_name=STUDY,
        trial_timeout_s=60.0,
        prune=False,
        seed=0,
        child_argv=stand_in("canned"),
    )
    return Context(
        settings=settings,
        model=model,
        model_sha256="0" * 64,
        workload=load_model(workload, Workload),
        space=resolve(load_search_space_config(space), machine),
        baselines={},
        starts={},
        hardware=Hardware("stand-in CPU", 2, 2, 4096.0, "Linux", ()),
        probe=Probe("0.0.0-stand-in", False, "", (50,)),
        storage=check_storage(settings.storage),
        study_name=STUDY,
        floor=ContextFloor(1, 64, 200, 250, 256, "steady", (40, 50)),
    )
