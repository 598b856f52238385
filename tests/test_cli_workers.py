"""Three `dm-tune run` processes started at once on one study, end to end: real llama.cpp trials
on the real demo GGUF, the study in a real SQLite file (or on a real PostgreSQL server).

On one machine the measurement lock lets one run measure at a time: the three queue, the first
runs the study's total and the others find it full. With the lock out of the way (each run its
own lock folder, as runs on separate machines, or `--gpus` workers on separate devices, have),
the three fill the study together: `--trials` is the study's total (tuner/study/_share.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuner.study import TrialRecord, counted_trials

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOTAL = 6
STUDY = "shared"
BASELINES = ["balanced", "cpu_fallback", "performance"]  # configs/: the app's profiles


def _start_three(
    storage: str, tmp_path: Path, model: Path, workload: Path, space: Path, own_locks: bool
) -> list[subprocess.Popen[str]]:
    cmd = [sys.executable, "-m", "tuner.cli", "run", "--model", str(model)]
    cmd += ["--workload", str(workload), "--search-space", str(space), "--storage", storage]
    cmd += ["--study", STUDY, "--trials", str(TOTAL), "--no-export", "--seed", "1"]
    procs = []
    for i in range(3):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if own_locks:
            env["DM_TUNE_LOCK_DIR"] = str(tmp_path / f"locks{i}")
        procs.append(
            subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=tmp_path,
                env=env,
            )
        )
    return procs


@pytest.mark.parametrize(
    ("where", "own_locks"),
    [
        ("sqlite", False),
        ("sqlite", True),
        pytest.param("postgres", True, marks=pytest.mark.postgres),
    ],
    ids=["sqlite-one-lock", "sqlite-own-locks", "postgres-own-locks"],
)
def test_three_runs_at_once_fill_the_study_to_its_total_once(
    where: str,
    own_locks: bool,
    request: pytest.FixtureRequest,
    demo_model: Path,
    quick_workload: Path,
    small_space: Path,
    tmp_path: Path,
) -> None:
    storage = (
        f"sqlite:///{tmp_path}/study.db"
        if where == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
    procs = _start_three(storage, tmp_path, demo_model, quick_workload, small_space, own_locks)
    outs = [p.communicate(timeout=240)[0] for p in procs]
    everything = "\n----\n".join(outs)
    assert [p.returncode for p in procs] == [0, 0, 0], everything
    assert "database is locked" not in everything

    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    counted = counted_trials(trials)
    assert len(counted) == TOTAL, everything  # the study's total, whoever ran them
    roles = Counter(TrialRecord.from_frozen(t).role for t in counted)
    assert sorted(name for (kind, name), n in roles.items() if kind == "baseline") == BASELINES
    assert all(n == 1 for (kind, _), n in roles.items() if kind != "sampled"), roles
    others = [TrialRecord.from_frozen(t) for t in trials if t not in counted]
    assert all(r.status in ("surplus", "duplicate") for r in others), others  # marked so

    if not own_locks:  # one at a time: the first to get the lock runs them all
        ran = [o for o in outs if f"[1/{TOTAL}]" in o]
        assert len(ran) == 1, everything
        full = f"already has {TOTAL} trials (target {TOTAL}); nothing to run"
        assert sum(full in o for o in outs) == 2, everything
        assert len(trials) == TOTAL  # nothing enqueued twice, nothing surplus
