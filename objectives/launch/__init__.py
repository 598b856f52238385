"""Starting and watching trial children: `run_child` runs one (timeout, pruning, NVML sampling,
the `go` barrier) and classifies how it ended, `Spawned` starts one, `WarmPool` keeps a
pre-warmed spare. The child itself is `python -m objectives.child`."""

from objectives.launch._prewarm import WarmPool
from objectives.launch._runner import (
    CHILD_ARGV,
    ChildResult,
    Watch,
    Watcher,
    describe_exit,
    is_crash,
    run_child,
)
from objectives.launch._spawned import (
    OWNER_FILE,
    Spawned,
    owner_alive,
    remove_orphan_folders,
    start_waiting,
    this_process,
)

__all__ = [
    "CHILD_ARGV",
    "OWNER_FILE",
    "ChildResult",
    "Spawned",
    "WarmPool",
    "Watch",
    "Watcher",
    "describe_exit",
    "is_crash",
    "owner_alive",
    "remove_orphan_folders",
    "run_child",
    "start_waiting",
    "this_process",
]
