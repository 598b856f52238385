"""A worker killed (SIGKILL) mid-trial on a PostgreSQL study (the `pg_url` fixture), then a second
worker: the killed trial ends FAIL, is run again once under its name, and the study still ends
with exactly its total of counted trials. A killed worker on this machine is recognised from
the trial's owner (its process is gone); one on another machine only by the heartbeat, with
the short timings of DM_TUNE_HEARTBEAT_S / DM_TUNE_HEARTBEAT_GRACE_S. One machine can't be
two: that worker's trial gets another host in its owner record, as such a worker would write."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError
from stand_in_run import STUDY
from test_workers_share import start_worker

from tuner.study import TrialRecord, counted_trials
from tuner.study._heartbeat import GRACE_ENV, HEARTBEAT_ENV
from tuner.study._study import KILLED

pytestmark = [pytest.mark.postgres]

GRACE_S = 3
BEAT = {HEARTBEAT_ENV: "1", GRACE_ENV: str(GRACE_S)}
TOTAL = 5  # the app's 3 profiles (the killed trial's retry one of them), 2 sampled trials
OTHER_HOST = "another-machine"


def _running_trial(url: str) -> FrozenTrial | None:
    try:
        study = optuna.load_study(study_name=STUDY, storage=url)
    except (KeyError, SQLAlchemyError):  # no study yet; its tables being made by the worker
        return None
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return running[0] if running else None


def _kill_mid_trial(url: str, tmp_path: Path, workload: Path) -> FrozenTrial:
    """A worker whose trial children measure for a minute, killed once its trial runs."""
    slow = {**BEAT, "DM_TUNE_STAND_IN_SLEEP_S": "60"}
    worker = start_worker(url, tmp_path, workload, TOTAL, slow)
    try:
        deadline = time.monotonic() + 60
        while (trial := _running_trial(url)) is None:
            assert worker.poll() is None, worker.communicate()[0]
            assert time.monotonic() < deadline, "no trial started running"
            time.sleep(0.2)
    finally:
        worker.kill()  # SIGKILL: nothing of the run gets to clean up
        worker.communicate()
    return trial


@pytest.mark.parametrize("host", ["this", "another"])
def test_a_trial_of_a_killed_worker_is_failed_and_run_again_once(
    host: str, pg_url: str, tmp_path: Path, quick_workload: Path
) -> None:
    killed = _kill_mid_trial(pg_url, tmp_path, quick_workload)
    study = optuna.load_study(study_name=STUDY, storage=pg_url)
    if host == "another":
        owner = {**(TrialRecord.from_frozen(killed).owner or {}), "host": OTHER_HOST}
        study._storage.set_trial_user_attr(killed._trial_id, "owner", owner)
        time.sleep(GRACE_S + 1)  # its last heartbeat is older than the grace period
    worker = start_worker(pg_url, tmp_path, quick_workload, TOTAL, BEAT)
    out = worker.communicate(timeout=120)[0]
    assert worker.returncode == 0, out

    trials = study.get_trials()
    assert all(t.state != TrialState.RUNNING for t in trials), out
    assert trials[killed.number].state == TrialState.FAIL
    gone = TrialRecord.from_frozen(trials[killed.number])
    (retry,) = [t for t in trials if TrialRecord.from_frozen(t).retry_of == killed.number]
    redo = TrialRecord.from_frozen(retry)
    assert retry.state == TrialState.COMPLETE and redo.role == gone.role
    # the killed trial may not have asked for all its settings yet: the retry has them all
    assert retry.params == {**killed.system_attrs.get("fixed_params", {}), **killed.params}
    if host == "this":  # its process is gone: known at once, without the heartbeat
        assert (gone.status, gone.reason) == ("interrupted", KILLED)
        assert "1 trial(s) were left running by a dm-tune run that was killed." in out
    else:  # failed by Optuna's heartbeat check in the second worker, through _on_stale
        assert gone.status is None
        assert redo.retry_reason == (
            f"its dm-tune run (on {OTHER_HOST}) sent no heartbeat for {GRACE_S} s"
        )
    counted = counted_trials(trials)
    assert len(counted) == TOTAL and retry in counted
    assert [TrialRecord.from_frozen(t).role for t in counted].count(gone.role) == 1
