"""`dm-tune run` killed, terminated or crashing during set-up, then run again: real processes,
the real trial child on the demo GGUF, a real SQLite file. Every wait is on an event (a printed
line, a process appearing or ending, a file), never on a sleep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
from optuna.trial import FrozenTrial, TrialState

from tests.test_cli_run import _args

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals to the run"),
]
APP_PROFILES = ["performance", "balanced", "cpu_fallback"]
# The app's profile names, with settings that stay distinct in the tests' small space (the
# shipped ones coincide there on a CPU, and a trial with the same settings is reused, not run).
PROFILES = (
    "version: 1\nprofiles:\n"
    "  performance: {n_gpu_layers: -1, n_ctx: 512, n_batch: 128, n_threads: 2}\n"
    "  balanced: {n_gpu_layers: 0, n_ctx: 512, n_batch: 32, n_threads: 1}\n"
    "  cpu_fallback: {n_gpu_layers: 0, n_ctx: 256, n_batch: 32, n_threads: 2}\n"
)


@pytest.fixture
def app_baselines(tmp_path: Path) -> Path:
    p = tmp_path / "baselines.yaml"
    p.write_text(PROFILES, encoding="utf-8")
    return p


@pytest.fixture
def long_workload(tmp_path: Path) -> Path:
    """Like tests/conftest.py's quick workload, with answers long enough (a second or more on
    a 2-core CPU) that a signal sent while a trial child measures lands inside that trial."""
    p = tmp_path / "long_workload.yaml"
    p.write_text(
        "version: 2\n"
        "system_prompt: Tu es Kira, une assistante virtuelle concise.\n"
        "app: {turns_kept: 1, max_tokens: 64}\n"
        "history:\n"
        "  - user: Salut Kira !\n"
        '    assistant: "[joie] Salut ! Comment vas-tu ?"\n'
        "message: Raconte-moi une longue histoire.\n"
        "gen_tokens: 120\n"
        "repeats: 4\n",
        encoding="utf-8",
    )
    return p


def _cmd(
    model: Path, workload: Path, space: Path, db: Path, trials: int, baselines: Path
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tuner.cli",
        *_args(model, workload, space),
        "--trials",
        str(trials),
        "--no-export",
        "--baselines",
        str(baselines),
        "--storage",
        f"sqlite:///{db}",
    ]


def _env(tmp: Path) -> dict[str, str]:
    """The run's trial folders in the test's own temp dir; the worktree's code imported."""
    (tmp / "tmp").mkdir(exist_ok=True)
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "TMPDIR": str(tmp / "tmp"), "PYTHONPATH": path}


def _trials(db: Path) -> list[FrozenTrial]:
    url = f"sqlite:///{db}"
    (summary,) = optuna.get_all_study_summaries(url)
    return optuna.load_study(study_name=summary.study_name, storage=url).get_trials()


def _measuring_child(
    proc: subprocess.Popen[str], timeout_s: float = 120
) -> tuple[psutil.Process, Path]:
    """Wait until a trial child of the run has its spec (it is measuring a trial)."""
    run = psutil.Process(proc.pid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        for p in run.children(recursive=True):
            try:
                folder = p.environ().get("DM_TUNE_TRIAL_DIR")
            except psutil.Error:
                continue
            if folder and (Path(folder) / "spec.json").exists():
                return p, Path(folder)
        assert proc.poll() is None, "the run ended before a trial child measured"
        time.sleep(0.02)  # polling for the event, not waiting for time to pass
    raise AssertionError("no trial child got a spec")


def _start_and_stop_mid_trial(
    cmd: list[str], tmp: Path, sig: signal.Signals
) -> tuple[subprocess.Popen[str], list[str], psutil.Process, Path, list[psutil.Process]]:
    """Start the run; once trial 0 is reported and the next trial's child measures, signal."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp, env=_env(tmp)
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("[1/"):  # trial 0 is stored; the next one has begun
            break
    assert lines and lines[-1].startswith("[1/"), "".join(lines)
    child, folder = _measuring_child(proc)
    family = psutil.Process(proc.pid).children(
        recursive=True
    )  # the measuring child and the pre-warmed spare
    proc.send_signal(sig)
    return proc, lines, child, folder, family


def _assert_resumed_invariants(
    trials: list[FrozenTrial], total: int, before: dict[int, object]
) -> None:
    """Nothing finished lost or duplicated; each interrupted trial re-run exactly once;
    the app's profiles measured exactly once."""
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    counted = [t for t in trials if t.user_attrs.get("status") != "interrupted"]
    assert len(counted) == total
    assert all(t.state == TrialState.COMPLETE for t in counted), [t.user_attrs for t in counted]
    for number, values in before.items():  # finished before the signal: kept as they were
        assert trials[number].values == values
    interrupted = [t for t in trials if t.user_attrs.get("status") == "interrupted"]
    for t in interrupted:
        redo = [o for o in trials if o.user_attrs.get("retry_of") == t.number]
        assert len(redo) == 1 and redo[0].params == t.params
        assert redo[0].user_attrs.get("baseline") == t.user_attrs.get("baseline")
    names = [t.user_attrs["baseline"] for t in counted if "baseline" in t.user_attrs]
    assert sorted(names) == sorted(APP_PROFILES)


def test_sigkill_of_the_run_mid_trial_then_resume(
    demo_model: Path, long_workload: Path, small_space: Path, app_baselines: Path, tmp_path: Path
) -> None:
    db = tmp_path / "k9.db"
    cmd = _cmd(demo_model, long_workload, small_space, db, 3, app_baselines)
    proc, lines, _child, folder, family = _start_and_stop_mid_trial(cmd, tmp_path, signal.SIGKILL)
    assert proc.stdout is not None
    lines.append(proc.stdout.read())
    proc.stdout.close()
    assert proc.wait(timeout=60) == -signal.SIGKILL
    # the trial child (and the spare) die with their parent: no process measures on
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left running: {alive}"
    assert folder.exists()  # killed at once, it could not clean up; the next run does
    after_kill = _trials(db)
    running = [t for t in after_kill if t.state == TrialState.RUNNING]
    assert len(running) == 1, [t.state for t in after_kill]
    killed = running[0]
    before = {t.number: t.values for t in after_kill if t.state == TrialState.COMPLETE}
    assert before

    again = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 trial(s) were left running by a dm-tune run that was killed" in again.stdout
    assert "Re-running 1 trial(s)" in again.stdout
    assert not folder.exists()
    assert not list((tmp_path / "tmp").glob("dm-tune-trial-*"))
    trials = _trials(db)
    k = trials[killed.number]
    assert k.state == TrialState.FAIL and k.user_attrs["status"] == "interrupted"
    assert "ended without finishing it (killed?)" in k.user_attrs["reason"]
    _assert_resumed_invariants(trials, 3, before)


def test_sigterm_of_the_run_is_an_interruption_then_resume(
    demo_model: Path, long_workload: Path, small_space: Path, app_baselines: Path, tmp_path: Path
) -> None:
    db = tmp_path / "term.db"
    cmd = _cmd(demo_model, long_workload, small_space, db, 3, app_baselines)
    proc, lines, _child, folder, family = _start_and_stop_mid_trial(cmd, tmp_path, signal.SIGTERM)
    assert proc.stdout is not None
    out = "".join(lines) + proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 143, out
    assert "Interrupted." in out and "Run the same command again to resume" in out
    _, alive = psutil.wait_procs(family, timeout=30)
    assert not alive, f"left running: {alive}"
    assert not folder.exists() and not list((tmp_path / "tmp").glob("dm-tune-trial-*"))
    after = _trials(db)
    assert not [t for t in after if t.state == TrialState.RUNNING]
    stopped = [t for t in after if t.user_attrs.get("status") == "interrupted"]
    assert len(stopped) == 1 and "SIGTERM" in stopped[0].user_attrs["reason"]
    before = {t.number: t.values for t in after if t.state == TrialState.COMPLETE}

    again = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Re-running 1 trial(s)" in again.stdout
    _assert_resumed_invariants(_trials(db), 3, before)


def test_a_setup_crash_after_the_study_was_created_still_measures_the_baselines(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    """The first run dies while it enqueues the starting trials (a start point it cannot
    use); after the file is fixed, the rerun measures the app's profiles, each exactly once."""
    db = tmp_path / "crash.db"
    baselines = tmp_path / "baselines.yaml"
    baselines.write_text(
        PROFILES + "starts:\n  broken: {from: performance, gpu_only: false, set: {n_batch: abc}}\n"
    )
    cmd = _cmd(demo_model, quick_workload, small_space, db, 4, baselines)
    first = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=300
    )
    assert first.returncode != 0, first.stdout + first.stderr
    baselines.write_text(PROFILES)
    again = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=600
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Baselines first" in again.stdout
    trials = _trials(db)
    assert len(trials) == 4
    assert [t.user_attrs.get("baseline") for t in trials[:3]] == APP_PROFILES
    # a third run has nothing left to do and enqueues nothing again
    third = subprocess.run(
        cmd, capture_output=True, text=True, cwd=tmp_path, env=_env(tmp_path), timeout=300
    )
    assert third.returncode == 0 and "nothing to run" in third.stdout
    assert len(_trials(db)) == 4
