"""Everything one `dm-tune run` needs, as one value the CLI builds and tests construct directly."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tuner.paths import DEFAULT_PROFILE_DIR, default_config
from tuner.profile import Prefer
from tuner.study._storage import DEFAULT_STORAGE


@dataclass(frozen=True)
class RunSettings:
    model: Path | None = None  # None: the embedded demo model
    trials: int = 50  # total trials the study should hold (re-running resumes up to it)
    vram_budget_mb: float = 6144.0
    min_ctx: str | None = None  # the context floor: tokens, "worst", or None (tuner.space)
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None  # None: derived from model and hardware
    search_space: Path = field(default_factory=lambda: default_config("search_space.yaml"))
    workload: Path = field(default_factory=lambda: default_config("workload.yaml"))
    baselines: Path | None = field(default_factory=lambda: default_config("baselines.yaml"))
    trial_timeout_s: float = 600.0
    latency: str = "cold"  # which first-token latency is the objective: cold | warm
    prefer: Prefer = Prefer.BALANCED  # the export rule
    repeats: int | None = None  # overrides the workload's repeats
    seed: int | None = None
    export: bool = True
    profile_dir: Path = DEFAULT_PROFILE_DIR
    confirm_k: int = 3  # re-measure this many top candidates before export (0: don't)
    confirm_runs: int = 2  # fresh processes per confirmed candidate
    prune: bool = True  # stop trials already dominated after their first answer (_pruning.py)
    max_same_failures: int = 3  # stop when the first trials all fail the same way
    wait_for_lock: bool = True  # another measurement running here: wait (False: UserError)
    child_argv: tuple[str, ...] | None = None  # tests: a stand-in child command
