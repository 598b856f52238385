"""Trials a dead run left behind, recognised from their owner (a real process that has ended)
or from Optuna's heartbeat, on a real SQLite study; SIGTERM turned into an interruption."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from objectives.launch import OWNER_FILE, remove_orphan_folders, this_process
from tuner.study import Terminated, counted_trials, exit_code, termination_as_interrupt
from tuner.study._study import _fail_orphans, _on_stale, _requeue_interrupted


def _study(tmp_path: Path) -> optuna.Study:
    return optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", directions=["maximize"])


def _ended_process() -> dict[str, object]:
    """The owner record of a real process that has exited."""
    code = "import json, socket, psutil, os; p = psutil.Process(); "
    code += "print(json.dumps({'host': socket.gethostname(), 'pid': p.pid, "
    code += "'created': p.create_time()}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    return dict(json.loads(out.stdout))


def _running(study: optuna.Study, owner: dict[str, object], baseline: str) -> int:
    t = study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    t.set_user_attr("owner", owner)
    t.set_user_attr("baseline", baseline)
    return t.number


def test_a_running_trial_of_a_dead_run_is_failed_and_re_run_once(tmp_path: Path) -> None:
    study = _study(tmp_path)
    dead = _running(study, _ended_process(), "balanced")
    alive = _running(study, this_process(), "performance")  # a live run: not touched
    assert _fail_orphans(study) == 1
    assert _fail_orphans(study) == 0  # already done
    trials = study.get_trials()
    assert trials[dead].state == TrialState.FAIL
    assert "ended without finishing it (killed?)" in trials[dead].user_attrs["reason"]
    assert trials[alive].state == TrialState.RUNNING
    assert _requeue_interrupted(study) == 1 and _requeue_interrupted(study) == 0
    (redo,) = study.get_trials(states=(TrialState.WAITING,))
    assert redo.user_attrs == {"retry_of": dead, "baseline": "balanced"}
    assert redo.system_attrs["fixed_params"] == trials[dead].params
    assert counted_trials(study.get_trials()) == []


def test_a_stale_heartbeat_trial_is_re_run_once_and_not_counted(tmp_path: Path) -> None:
    study = _study(tmp_path)
    n = _running(study, {"host": "elsewhere", "pid": 1, "created": 0.0}, "balanced")
    study.tell(n, state=TrialState.FAIL)  # what Optuna's fail_stale_trials does
    for _ in range(2):
        _on_stale(study, study.get_trials()[n], grace_s=120)
    (redo,) = study.get_trials(states=(TrialState.WAITING,))
    assert redo.user_attrs["retry_of"] == n and redo.user_attrs["baseline"] == "balanced"
    assert "on elsewhere) sent no heartbeat for 120 s" in redo.user_attrs["retry_reason"]
    assert counted_trials(study.get_trials()) == []


def test_only_folders_of_dead_runs_are_removed(tmp_path: Path) -> None:
    import json

    dead, mine, unknown = (tmp_path / f"dm-tune-trial-{n}" for n in ("a", "b", "c"))
    for folder, owner in ((dead, _ended_process()), (mine, this_process()), (unknown, None)):
        folder.mkdir()
        if owner is not None:
            (folder / OWNER_FILE).write_text(json.dumps(owner))
    assert remove_orphan_folders(tmp_path) == 1
    assert not dead.exists() and mine.exists() and unknown.exists()


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_sigterm_becomes_an_interruption_with_its_exit_code() -> None:
    with pytest.raises(Terminated) as info, termination_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # let the handler run
    assert exit_code(info.value) == 143 and isinstance(info.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored
    assert exit_code(KeyboardInterrupt()) == 130
