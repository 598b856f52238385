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
import time
from collections import Counter
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from tuner.study import TrialRecord, counted_trials
from tuner.study._lifeline import alive

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


# no GPU here: NVML's list is given; the workers are the real `dm-tune run`
GPUS_PARENT = ROOT / "scripts" / "cpu_workers.py"


def test_killing_dm_tune_run_gpus_stops_its_real_workers_cleanly(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    """kill -9 on `dm-tune run --gpus 0,1` while its two workers measure: each stops as after
    Ctrl-C (tuner/study/_lifeline.py): the trials they measured are recorded as interrupted,
    none is left running. Trials of a few seconds (96 tokens, twice): still measuring when the
    workers see their parent gone (within a second)."""
    longer = tmp_path / "longer.yaml"
    text = quick_workload.read_text(encoding="utf-8").replace("max_tokens: 64", "max_tokens: 128")
    text = text.replace("gen_tokens: 8", "gen_tokens: 96").replace("repeats: 1", "repeats: 2")
    longer.write_text(text, encoding="utf-8")
    storage = f"sqlite:///{tmp_path}/study.db"
    args = ["--model", str(demo_model), "--workload", str(longer)]
    args += ["--search-space", str(small_space), "--storage", storage, "--study", STUDY]
    args += ["--trials", "100", "--no-export", "--no-baselines", "--seed", "1"]
    log = (tmp_path / "parent.log").open("w")
    parent = subprocess.Popen(
        [sys.executable, str(GPUS_PARENT), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    measuring: list[int] = []
    deadline = time.monotonic() + 120
    while len(measuring) < 2 and time.monotonic() < deadline:  # both workers in a trial
        assert parent.poll() is None, (tmp_path / "parent.log").read_text()
        time.sleep(0.2)
        measuring = _running(storage)
    assert len(measuring) == 2, (tmp_path / "parent.log").read_text()
    workers = psutil.Process(parent.pid).children()
    assert len(workers) == 2

    psutil.Process(parent.pid).kill()
    parent.wait()
    log.close()
    _, left = psutil.wait_procs(workers, timeout=90)
    assert not [p for p in left if alive(p)]
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    for n in measuring:  # cut short: recorded as the interrupt path records it
        r = TrialRecord.from_frozen(trials[n])
        assert trials[n].state == TrialState.FAIL and r.status == "interrupted", (n, r)
        assert r.reason is not None and "parent `dm-tune run --gpus`" in r.reason


def _running(storage: str) -> list[int]:
    """Numbers of the study's running trials (none before a worker has made the study)."""
    try:
        study = optuna.load_study(study_name=STUDY, storage=storage)
    except KeyError:
        return []
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def test_gpus_confirms_and_exports_once_after_every_worker(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    """Two real workers fill the study without exporting; then one run on the first GPU and
    all their cores prints the summary, confirms the top candidates once and writes the one
    profile (each worker used to confirm and export as it finished, over the other's)."""
    storage = f"sqlite:///{tmp_path}/study.db"
    args = ["--model", str(demo_model), "--workload", str(quick_workload)]
    args += ["--search-space", str(small_space), "--storage", storage, "--study", STUDY]
    args += ["--trials", "4", "--no-baselines", "--seed", "1", "--confirm", "2"]
    args += ["--confirm-runs", "1", "--profile-dir", str(tmp_path / "profiles")]
    r = subprocess.run(
        [sys.executable, str(GPUS_PARENT), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    before, _, after = out.partition("All workers done.")
    assert after, out
    assert "Confirming the top" not in before and "Profile written" not in before
    assert "Pareto front" not in before and "Inspect:" not in before  # the workers' share
    assert after.count("Pareto front") == 1 and "Inspect: dm-tune report" in after
    assert after.count("Confirming the top 2 candidates") == 1
    assert after.count("Profile written") == 1
    assert "already has 4 trials" in after  # the last run measures nothing more
    assert len(list((tmp_path / "profiles").glob("*.yaml"))) == 1
    study = optuna.load_study(study_name=STUDY, storage=storage)
    assert len(counted_trials(study.get_trials())) == 4
    assert study.user_attrs.get("confirmed")
