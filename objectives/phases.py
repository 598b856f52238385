"""The lines a child writes on stderr for its parent: phase markers and progress lines.

A child marks each phase (`dm-tune-phase: NAME`) so that the parent can tell where a native crash
happened, when a pre-warmed child is ready or has loaded its model (objectives.launch), and when
the measured answers run (NVML sampling, pruning). Defined once here for the children, the
parent's parser and the tests' stand-in children.
"""

from __future__ import annotations

import sys

MARKER_PREFIX = "dm-tune-"  # every line of ours; the rest of stderr is the child's own output
PHASE_PREFIX = "dm-tune-phase: "
PROGRESS_PREFIX = "dm-tune-progress: "  # TOKENS TTFT_S GEN_S of the first measured answer

# The trial child (objectives.child, objectives.measure)
IMPORT = "import"
READY = "ready"  # a pre-warmed child has done its imports and waits for its spec
LOAD = "load"
LOADED = "loaded"  # a pre-warmed child waits for `go` from here
WARMUP = "warmup"
REPEAT = "repeat"  # `repeat N`: the N-th measured answer (see `repeat`)
NEXT_TURN = "next turn"
EARLY_TURN = "early turn"
DONE = "done"
# The build probe (objectives.probe)
TOKENIZE = "tokenize"
SMOKE_LOAD = "smoke load"
SMOKE_DECODE = "smoke decode"
SMOKE_DONE = "smoke done"
# The soak child (objectives.soak_child)
MESSAGE = "message"  # `message N` (see `message`)


def repeat(n: int) -> str:
    return f"{REPEAT} {n}"


def message(n: int) -> str:
    return f"{MESSAGE} {n}"


def is_measuring(name: str | None) -> bool:
    """A measured answer runs (any `repeat N`)."""
    return bool(name and name.startswith(REPEAT))


def marker(name: str) -> str:
    return PHASE_PREFIX + name


def phase(name: str) -> None:
    """Mark progress on stderr so the parent can tell where a native crash happened."""
    print(marker(name), file=sys.stderr, flush=True)


def last_phase(text: str) -> str | None:
    """The last phase a child's stderr marks (None before the first)."""
    found = None
    for line in text.splitlines():
        if line.startswith(PHASE_PREFIX):
            found = line[len(PHASE_PREFIX) :].strip()
    return found
