"""Launchers: how a command starts its children, chosen once where the command starts.

`ColdLauncher` starts a fresh interpreter per spec (the probe, verify, soak, the bench scripts,
and the tests' stand-in children); `PoolLauncher` takes each child pre-warmed from a `WarmPool`
(the study and its confirmation). Both watch the child through the same runner and hand back a
`ChildResult`; callers only say what to run (a spec) and for how long.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import psutil

from objectives.launch._prewarm import WarmPool
from objectives.launch._runner import ChildResult, Watcher, run_spawned
from objectives.launch._spawned import start
from objectives.launch._spec import ChildSpec

CHILD_ARGV = [sys.executable, "-m", "objectives.child"]


class Launcher(Protocol):
    def run(
        self, spec: ChildSpec, timeout_s: float, *, watcher: Watcher | None = None
    ) -> ChildResult:
        """Run one child on `spec` to completion, timeout, pruning (`watcher`) or crash."""
        ...


class ColdLauncher:
    """Each child a fresh `argv SPEC.json RESULT.json` (the trial child unless told otherwise)."""

    def __init__(self, argv: Sequence[str] = CHILD_ARGV, *, sample_gpu: bool = True) -> None:
        self.argv = tuple(argv)
        self.sample_gpu = sample_gpu  # NVML peak VRAM of the child's tree

    def __repr__(self) -> str:
        return f"ColdLauncher({list(self.argv)!r}, sample_gpu={self.sample_gpu})"

    def run(
        self, spec: ChildSpec, timeout_s: float, *, watcher: Watcher | None = None
    ) -> ChildResult:
        child = start(list(self.argv), spec.to_json_dict())
        return run_spawned(
            child, timeout_s, sample_gpu=self.sample_gpu, watcher=watcher, wait_for=None
        )


class PoolLauncher:
    """Each child pre-warmed from `pool`; when its threads would share cores with the pool's
    next spare, it measures only once that spare is ready (objectives/launch/_prewarm.py)."""

    def __init__(self, pool: WarmPool, *, sample_gpu: bool = True) -> None:
        self.pool = pool
        self.sample_gpu = sample_gpu

    def __repr__(self) -> str:
        return f"PoolLauncher({self.pool.argv!r}, sample_gpu={self.sample_gpu})"

    def run(
        self, spec: ChildSpec, timeout_s: float, *, watcher: Watcher | None = None
    ) -> ChildResult:
        data = spec.to_json_dict()
        child = self.pool.take()
        child.give_spec(data)
        wait_for = self.pool if _shares_cores(data) else None
        return run_spawned(
            child, timeout_s, sample_gpu=self.sample_gpu, watcher=watcher, wait_for=wait_for
        )


@contextmanager
def trial_launcher(argv: Sequence[str] | None = None) -> Iterator[Launcher]:
    """The study's launcher: pre-warmed trial children, the spare ended on exit. A custom child
    command (the tests' stand-ins) is started cold per trial instead."""
    if argv:
        yield ColdLauncher(argv)
        return
    with WarmPool(CHILD_ARGV) as pool:
        yield PoolLauncher(pool)


def _shares_cores(spec: dict[str, Any]) -> bool:
    """Would a spare starting up now take CPU time from this trial's threads?

    With two logical cores left over (one for the spare, one for this process and the OS) the
    trial's measurement doesn't wait for the spare to be ready."""
    params = spec.get("params", {})
    threads = max(int(params.get("n_threads") or 0), int(params.get("n_threads_batch") or 0))
    cores = psutil.cpu_count(logical=True) or 1
    return threads <= 0 or threads > cores - 2
