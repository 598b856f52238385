"""Starting and watching trial children. A `Launcher` runs one child on a spec (timeout,
pruning, NVML sampling, the `go` barrier) and classifies how it ended: `ColdLauncher` starts a
fresh process per spec, `PoolLauncher` takes one pre-warmed from a `WarmPool`; a command picks
its launcher once (`trial_launcher` for the study) and passes it down. `TrialSpec` is what a
trial child is asked to measure. The child itself is `python -m objectives.child`."""

from objectives.launch._launcher import (
    CHILD_ARGV,
    ColdLauncher,
    Launcher,
    PoolLauncher,
    trial_launcher,
)
from objectives.launch._prewarm import WarmPool
from objectives.launch._runner import (
    ChildResult,
    Watch,
    Watcher,
    describe_exit,
    is_crash,
)
from objectives.launch._spawned import (
    OWNER_FILE,
    Spawned,
    owner_alive,
    remove_orphan_folders,
    start_waiting,
    this_process,
)
from objectives.launch._spec import ChildSpec, TrialSpec

__all__ = [
    "CHILD_ARGV",
    "OWNER_FILE",
    "ChildResult",
    "ChildSpec",
    "ColdLauncher",
    "Launcher",
    "PoolLauncher",
    "Spawned",
    "TrialSpec",
    "WarmPool",
    "Watch",
    "Watcher",
    "describe_exit",
    "is_crash",
    "owner_alive",
    "remove_orphan_folders",
    "start_waiting",
    "this_process",
    "trial_launcher",
]
