"""One worker of a study, as its own process: `python worker_proc.py STORAGE_URL TMP WORKLOAD
TRIALS` runs `run_study` with stand-in trial children (tests/stand_ins/canned.py), the app's
profiles and start points of configs/baselines.yaml, on the CPU-only machine of stand_in_run."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[2])]

from stand_in_run import run_context  # noqa: E402

from objectives.launch import ColdLauncher  # noqa: E402
from tests.conftest import stand_in  # noqa: E402
from tuner.paths import default_config  # noqa: E402
from tuner.space import load_baselines, load_starts  # noqa: E402
from tuner.study import check_storage  # noqa: E402
from tuner.study._study import run_study  # noqa: E402


def main(url: str, tmp: str, workload: str, trials: int) -> int:
    ctx = run_context(Path(tmp), Path(workload), default_config("search_space.yaml"), trials=trials)
    baselines = default_config("baselines.yaml")
    settings = dataclasses.replace(ctx.settings, storage=url)
    ctx = dataclasses.replace(
        ctx,
        settings=settings,
        storage=check_storage(url),
        baselines=load_baselines(baselines),
        starts=load_starts(baselines, gpu_offload=False),
    )
    result = run_study(ctx, ColdLauncher(stand_in("canned"), sample_gpu=False))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
