"""Two `--gpus` workers on one SQLite study, end to end but for the GPU (none here: the issue's
fallback, two CPU workers on separate cores): the real spawner, core split and per-worker
measurement lock, each worker running the real study loop with stand-in trial children."""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState
from stand_in_run import STUDY, storage_url, worker_command

from tuner.study import DIRECTIONS, TrialRecord, plan_workers, run_workers


def test_two_cpu_workers_share_one_study_on_their_own_cores(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    optuna.create_study(storage=storage_url(tmp_path), study_name=STUDY, directions=DIRECTIONS)
    out: list[str] = []
    command = worker_command(tmp_path, quick_workload, small_space, "canned", 4)
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
