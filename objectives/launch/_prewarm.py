"""A spare trial child, started while the current trial runs (start-up off the critical path).

Each trial runs in a fresh process (crash and VRAM isolation), which costs interpreter start-up,
`import llama_cpp` and the backend's device discovery on every trial: about 1.3 s on a CUDA
machine, more than the model load. `WarmPool.take()` hands out a child that has already done all
that (objectives.launch.start_waiting) and starts the next spare at once, so the spare gets
ready while the current child loads its model.

The spare's start-up never competes with a measurement for CPU: a pooled child waits after its
model load until `spare_settled()` (the spare is ready, has died, or has taken longer than
`settle_s`) unless its threads leave two logical cores free (objectives.launch), and only then
measures. The spare does no GPU allocation before it gets a spec: device discovery creates
no CUDA context, so neither per-process nor device-level VRAM readings of the trial see it.
"""

from __future__ import annotations

import subprocess
import time
from types import TracebackType

from objectives.launch._spawned import Spawned, kill_tree, start_waiting


class WarmPool:
    def __init__(self, argv: list[str], *, settle_s: float = 60.0) -> None:
        self.argv = list(argv)
        self.settle_s = settle_s
        self._spare: Spawned | None = None
        self._spare_t0 = 0.0

    def _start_spare(self) -> None:
        self._spare = start_waiting(self.argv)
        self._spare_t0 = time.perf_counter()

    def take(self) -> Spawned:
        """A waiting child for the next trial; the spare after it starts now."""
        child = self._spare
        if child is None or (child.proc.poll() is not None and child.proc.returncode == 0):
            if child is not None:
                child.close()
            child = start_waiting(self.argv)
        self._start_spare()
        return child

    def spare_settled(self) -> bool:
        s = self._spare
        return s is None or s.is_ready() or time.perf_counter() - self._spare_t0 > self.settle_s

    def close(self) -> None:
        """End the spare (it holds no trial) and remove its folder."""
        s, self._spare = self._spare, None
        if s is not None:
            s.send("")  # a waiting child exits on an empty line
            try:
                s.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                kill_tree(s.proc.pid, grace_s=1.0)
                s.proc.wait()
            s.close()

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
