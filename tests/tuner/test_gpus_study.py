"""Two `--gpus` workers on one SQLite study, end to end but for the GPU (none here: the issue's
fallback, two CPU workers on separate cores): the real spawner, core split and per-worker
measurement lock, each worker running the real study loop with stand-in trial children."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState
from stand_in_run import STUDY, storage_url

from tuner.study import DIRECTIONS, TrialRecord, plan_workers, run_workers

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import sys
from pathlib import Path
sys.path[:0] = [{root!r}, {tests!r}]
from stand_in_run import run_context
from objectives.launch import ColdLauncher
from tests.conftest import stand_in
from tuner.machine import measured_resources, measurement_lock
from tuner.study._study import run_study

tmp, workload, space = (Path(a) for a in sys.argv[1:4])
with measurement_lock("dm-tune run", "worker", wait=False, resources=measured_resources([])):
    ctx = run_context(tmp, workload, space, trials=4)
    result = run_study(ctx, ColdLauncher(stand_in("canned"), sample_gpu=False), print)
print("ran", result.ran)
"""


def test_two_cpu_workers_share_one_study_on_their_own_cores(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    optuna.create_study(storage=storage_url(tmp_path), study_name=STUDY, directions=DIRECTIONS)
    script = WORKER.format(root=str(ROOT), tests=str(ROOT / "tests" / "tuner"))
    out: list[str] = []
    command = [sys.executable, "-c", script, str(tmp_path), str(quick_workload), str(small_space)]
    # wait=False above: a worker blocked by the other's lock would fail, not wait
    workers = plan_workers([0, 1])
    code = run_workers(workers, command, out=out.append, err=out.append)
    assert code == 0, "\n".join(out)
    assert any(line.startswith("[gpu0] ran ") for line in out)
    assert any(line.startswith("[gpu1] ran ") for line in out)
    trials = optuna.load_study(study_name=STUDY, storage=storage_url(tmp_path)).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4  # the study-wide total: workers never overshoot it
    cores = {TrialRecord.from_frozen(t).cpu_cores for t in done}
    shares = {w.env()["DM_TUNE_WORKER_CORES"] for w in workers}
    assert cores and cores <= shares, cores  # each trial names its worker's cores
