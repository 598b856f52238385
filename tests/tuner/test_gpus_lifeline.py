"""`dm-tune run --gpus` killed outright (kill -9, a crash, a closed console): its workers stop
as after Ctrl-C. Real processes: the spawner in a parent process, two CPU workers running the
real study loop (no GPU here), each measuring a stand-in trial that hangs, with a grandchild."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import TrialState
from stand_in_run import ROOT, STUDY, storage_url, worker_command

from tuner.study import DIRECTIONS, TrialRecord
from tuner.study._lifeline import (
    PARENT_ENV,
    Lifeline,
    ParentGone,
    alive,
    parent_env,
    stop_when_parent_gone,
)

PARENT = """
import json, sys
from tuner.study import plan_workers, run_workers
sys.exit(run_workers(plan_workers([0, 1]), json.loads(sys.argv[1])))
"""


def _running(url: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=STUDY, storage=url)
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def test_workers_stop_cleanly_when_their_parent_is_killed(
    tmp_path: Path, quick_workload: Path, small_space: Path
) -> None:
    url = storage_url(tmp_path)
    optuna.create_study(storage=url, study_name=STUDY, directions=DIRECTIONS)
    command = worker_command(tmp_path, quick_workload, small_space, "hang", 4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "parent.log").open("w")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, json.dumps(command)], stdout=log, stderr=log, env=env
    )
    family: list[psutil.Process] = []
    deadline = time.monotonic() + 60
    # both workers measuring: their trials RUNNING, each trial child with its grandchild
    while (len(_running(url)) < 2 or len(family) < 6) and time.monotonic() < deadline:
        assert parent.poll() is None, (tmp_path / "parent.log").read_text()
        time.sleep(0.2)
        family = psutil.Process(parent.pid).children(recursive=True)
    assert len(family) >= 6 and len(_running(url)) == 2, (tmp_path / "parent.log").read_text()

    psutil.Process(parent.pid).kill()  # SIGKILL; TerminateProcess on Windows
    parent.wait()
    log.close()

    _, left = psutil.wait_procs(family, timeout=60)
    assert not [p for p in left if alive(p)], (tmp_path / "parent.log").read_text()
    trials = optuna.load_study(study_name=STUDY, storage=url).get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [TrialRecord.from_frozen(t) for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2
    for r in stopped:  # recorded as an interruption: the next run re-runs them
        assert r.status == "interrupted"
        assert r.reason is not None and "parent `dm-tune run --gpus`" in r.reason


@pytest.mark.parametrize("named", [{}, {PARENT_ENV: "not a process"}])
def test_no_parent_named_nothing_watched(named: dict[str, str]) -> None:
    with stop_when_parent_gone(environ=named, poll_s=0.05) as lifeline:
        time.sleep(0.3)  # outside a worker (or a name it can't read): no watch, no handler
    assert not lifeline.watched


@contextmanager
def _kept_output() -> Iterator[None]:
    """Stdout and stderr back after the lifeline points them at the null device."""
    saved = [os.dup(1), os.dup(2)]
    try:
        yield
    finally:
        for fd, s in zip((1, 2), saved, strict=True):
            os.dup2(s, fd)
            os.close(s)


def _broken(_line: str) -> None:
    raise BrokenPipeError(32, "Broken pipe")


def test_a_line_to_the_gone_parents_pipe_stops_the_run_once() -> None:
    """The pipe can break before the watch's next look: the run stops the same way."""
    echo = Lifeline(parent=None, watched=True).guard(_broken)
    with _kept_output():
        with pytest.raises(ParentGone):
            echo("[3/6] ...")
        echo("[4/6] ...")  # already stopping: not raised twice
    with pytest.raises(BrokenPipeError):  # not a worker: not the lifeline's business
        Lifeline().guard(_broken)("x")


def test_a_gone_parent_interrupts_the_main_thread(tmp_path: Path) -> None:
    """A parent that has ended (a real process): ParentGone reaches the block's main thread;
    a reused pid (same pid, other creation time) is not taken for the parent."""
    code = "import json, sys; from tuner.study._lifeline import parent_env; "
    code += "print(json.dumps(parent_env()))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    ended = json.loads(out.stdout)
    mine = parent_env()[PARENT_ENV]
    reused = {PARENT_ENV: mine.split(":")[0] + ":1.0"}  # this pid, started long ago
    for named in (ended, reused):
        with (
            _kept_output(),
            pytest.raises(ParentGone),
            stop_when_parent_gone(environ=named, poll_s=0.05),
        ):
            for _ in range(600):  # short sleeps: Windows' interrupt_main waits for one
                time.sleep(0.05)
    with stop_when_parent_gone(environ={PARENT_ENV: mine}, poll_s=0.05):
        time.sleep(0.3)  # a live parent: nothing happens
