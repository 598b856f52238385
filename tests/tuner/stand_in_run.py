"""A whole run's `Context` for `run_study` with stand-in trial children: the real search space,
workload, storage check and context floor; the model, machine and probe are made-up values (no
GGUF is read, no llama.cpp probed: the stand-in children never open the model)."""

from __future__ import annotations

import sys
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
ROOT = Path(__file__).resolve().parents[2]
# One worker of `dm-tune run --gpus` as `tune()` runs it (parent lifeline, its own measurement
# lock: wait=False, so a worker blocked by another's lock fails instead of waiting), with the
# real study loop and a stand-in trial child. argv: tmp, workload, space, stand-in, trials.
_WORKER = """
import sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from stand_in_run import run_context
from objectives.launch import ColdLauncher
from tests.conftest import stand_in
from tuner.machine import measured_resources, measurement_lock
from tuner.study._lifeline import stop_when_parent_gone
from tuner.study._study import run_study

tmp, workload, space = (Path(a) for a in sys.argv[1:4])
lock = measurement_lock("dm-tune run", "worker", wait=False, resources=measured_resources([]))
with stop_when_parent_gone() as lifeline, lock:
    ctx = run_context(tmp, workload, space, trials=int(sys.argv[5]))
    launcher = ColdLauncher(stand_in(sys.argv[4]), sample_gpu=False)
    result = run_study(ctx, launcher, lifeline.guard(print))
print("ran", result.ran)
sys.exit(result.exit_code)
"""


def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/dm-tune.db"


def worker_command(
    tmp_path: Path, workload: Path, space: Path, child: str, trials: int
) -> list[str]:
    """A stand-in `dm-tune run` worker on study 'loop' in `tmp_path`, trial child `child`."""
    script = _WORKER.format(root=str(ROOT), tests=str(ROOT / "tests" / "tuner"))
    args = [str(tmp_path), str(workload), str(space), child, str(trials)]
    return [sys.executable, "-c", script, *args]


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
