"""Pre-warmed trial children (objectives.launch) with the real child and the demo model."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from objectives import phases
from objectives.launch import (
    CHILD_ARGV,
    PoolLauncher,
    Spawned,
    TrialSpec,
    WarmPool,
    start_waiting,
)

WORKLOAD = {
    "prompt": "<|user|>\nBonjour</|user|>\n<|assistant|>\n",
    "next_prompt": None,
    "max_tokens": 8,
    "temperature": 0.7,
    "top_p": 0.9,
    "seed": 1,
    "warmup": False,
    "repeats": 1,
}


def _waiting_children() -> list[psutil.Process]:
    """This test's own waiting trial children (not those of other runs on the machine)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
        except psutil.Error:  # exited meanwhile
            continue
        if "objectives.child" in cmd and "--wait" in cmd:
            out.append(p)
    return out


def _wait_ready(child: Spawned | None, timeout_s: float = 60) -> None:
    assert child is not None
    t0 = time.perf_counter()
    while not child.is_ready():
        assert time.perf_counter() - t0 < timeout_s, "child never got ready"
        time.sleep(0.05)


@pytest.mark.slow
def test_pooled_trials_measure_with_startup_off_the_critical_path(demo_model: Path) -> None:
    spec = TrialSpec.of(demo_model, {"n_threads": 2, "n_ctx": 256, "n_gpu_layers": 0}, WORKLOAD)
    with WarmPool(CHILD_ARGV) as pool:
        launcher = PoolLauncher(pool)
        first = launcher.run(spec, 120)
        _wait_ready(pool._spare)  # as after a real trial's measurement
        second = launcher.run(spec, 120)
    for res in (first, second):
        assert res.status == "ok", res.reason + res.stderr_tail
        assert res.metrics is not None and res.metrics.n_generated == 8
    extra = second.metrics.extra if second.metrics else {}
    assert extra["prewarm_s"] > extra["startup_s"]  # imports happened before the spec came
    assert extra["startup_s"] < 0.5
    assert not _waiting_children(), "the pool left its spare running"


def test_waiting_child_exits_quietly_on_an_empty_line() -> None:
    child = start_waiting(CHILD_ARGV)
    try:
        _wait_ready(child)
        assert child.send("")
        assert child.proc.wait(timeout=30) == 0
    finally:
        child.end()
        child.close()


def test_a_spare_that_died_at_start_up_is_that_trials_failure(tmp_path: Path) -> None:
    script = tmp_path / "broken_child.py"
    script.write_text("raise ImportError('libggml-cuda.so: cannot open shared object file')\n")
    with WarmPool([sys.executable, str(script)]) as pool:
        res = PoolLauncher(pool).run(TrialSpec("x", {}, {}), 30)
    assert res.status == "failed"
    assert "cannot open shared object file" in res.reason


def test_a_waiting_child_that_hangs_is_timed_out(tmp_path: Path) -> None:
    script = tmp_path / "slow_child.py"
    script.write_text(
        "import sys, time\n"
        f"print({phases.marker(phases.READY)!r}, file=sys.stderr, flush=True)\n"
        "sys.stdin.readline()\n"
        "time.sleep(600)\n"
    )
    with WarmPool([sys.executable, str(script)]) as pool:
        t0 = time.perf_counter()
        res = PoolLauncher(pool).run(TrialSpec("x", {}, {}), 2)
    assert res.status == "timeout"
    assert time.perf_counter() - t0 < 20
