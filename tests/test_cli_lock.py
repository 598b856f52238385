"""Two real `dm-tune run` processes at once on one machine: the second waits for the first's
measurement lock (or, with --no-wait, refuses and writes nothing), so their trials never
overlap. The first is paused (SIGSTOP) while the second meets its lock, so the order is an
event, not a race against the first finishing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import psutil
import pytest

from tests.test_cli_run import _args, _load

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _cmd(model: Path, workload: Path, space: Path, db: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tuner.cli",
        *_args(model, workload, space),
        "--trials",
        "3",
        "--no-baselines",
        "--no-export",
        "--storage",
        f"sqlite:///{db}",
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _start(cmd: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
        env=_env(),
    )


def _until(p: subprocess.Popen[str], prefix: str, seen: list[str]) -> str:
    """Read p's output up to the first line starting with `prefix` (the event waited on)."""
    assert p.stdout is not None
    for line in p.stdout:
        seen.append(line)
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting {prefix!r}:\n{''.join(seen)}")


def _finish(p: subprocess.Popen[str], seen: list[str]) -> str:
    assert p.stdout is not None
    seen.append(p.stdout.read())
    p.stdout.close()
    p.wait(timeout=300)
    return "".join(seen)


def _first_holding(cmd: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Start a run, wait until it holds the lock and named its study, then pause it."""
    first = _start(cmd, cwd)
    seen: list[str] = []
    line = _until(first, "Study: ", seen)  # printed under the lock, after the study is named
    m = re.search(r"\(study '([^']+)'\)", line)
    assert m, line
    first.send_signal(signal.SIGSTOP)
    return first, m.group(1), seen


def _span(db: Path) -> tuple[float, float]:
    trials = _load(db).get_trials()
    assert trials and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    starts = [t.datetime_start.timestamp() for t in trials if t.datetime_start]
    ends = [t.datetime_complete.timestamp() for t in trials if t.datetime_complete]
    return min(starts), max(ends)


def test_a_second_run_waits_for_the_first_and_their_trials_never_overlap(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    first, name, seen_a = _first_holding(_cmd(demo_model, quick_workload, small_space, a), tmp_path)
    try:
        second = _start(_cmd(demo_model, quick_workload, small_space, b), tmp_path)
        seen_b: list[str] = []
        waiting = _until(second, "waiting for the measurement lock", seen_b)
        assert f"held by dm-tune run pid {first.pid} (study '{name}') since " in waiting
        assert not b.exists()  # it waits before it writes anything
    finally:
        first.send_signal(signal.SIGCONT)
    out_a = _finish(first, seen_a)
    out_b = _finish(second, seen_b)
    assert first.returncode == 0, out_a
    assert second.returncode == 0, out_b
    assert "measurement lock on the CPU acquired" in out_b
    a_start, a_end = _span(a)
    b_start, b_end = _span(b)
    assert a_end <= b_start, (a_start, a_end, b_start, b_end)


def test_no_wait_refuses_with_one_line_and_writes_nothing_and_a_killed_holder_blocks_nothing(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    first, name, _ = _first_holding(_cmd(demo_model, quick_workload, small_space, a), tmp_path)
    profiles = tmp_path / "profiles"
    second = _cmd(demo_model, quick_workload, small_space, b, "--no-wait")
    second[second.index("--no-export")] = "--export"
    second += ["--profile-dir", str(profiles)]
    try:
        r = subprocess.run(
            second, capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120
        )
        assert r.returncode == 2, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith(
            "error: the measurement lock on the CPU is held by "
            f"dm-tune run pid {first.pid} (study '{name}') since "
        ), r.stderr
        assert r.stdout == ""
        assert not b.exists() and not profiles.exists()
    finally:
        # kill -9 the (paused) holder and its trial processes: the kernel frees its lock
        tree = psutil.Process(first.pid).children(recursive=True)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        for child in tree:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(tree, timeout=30)
        if first.stdout is not None:
            first.stdout.close()
    again = subprocess.run(
        [*second, "--confirm", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "waiting" not in again.stdout
    assert len(_load(b).get_trials()) == 3
