"""How often a running trial's run writes a heartbeat to the study's storage, and how long
without one before any worker of the study takes that run for gone (Optuna's RDBStorage
heartbeat). Set from the environment: shorter to re-run a dead host's trial sooner (a fleet of
short trials, a test), longer where a worker may lose the database for minutes and still finish
(its trial would otherwise be taken for stale and run again elsewhere)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tuner.errors import UserError

HEARTBEAT_ENV = "DM_TUNE_HEARTBEAT_S"
GRACE_ENV = "DM_TUNE_HEARTBEAT_GRACE_S"
HEARTBEAT_S = 30  # a running trial's run writes a heartbeat this often
GRACE_S = 120  # no heartbeat for this long: that run is gone (another host's, on shared storage)


@dataclass(frozen=True)
class Heartbeat:
    interval_s: int
    grace_s: int


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(
            f"{name}={raw!r} is not a number of seconds; set it to a whole number of at least 1 "
            f"(default {default}) or unset it"
        )
    return value


def heartbeat() -> Heartbeat:
    """The heartbeat timings: DM_TUNE_HEARTBEAT_S and DM_TUNE_HEARTBEAT_GRACE_S where set
    (whole seconds), else 30 s and 120 s. Every worker of a study should use the same ones:
    the grace a worker applies is its own, to every other worker's trials."""
    beat = Heartbeat(_seconds(HEARTBEAT_ENV, HEARTBEAT_S), _seconds(GRACE_ENV, GRACE_S))
    if beat.grace_s <= beat.interval_s:
        raise UserError(
            f"{GRACE_ENV} ({beat.grace_s} s) must be longer than {HEARTBEAT_ENV} "
            f"({beat.interval_s} s), or a live run's trials would be taken for stale; set "
            f"{GRACE_ENV} to a few heartbeats ({GRACE_S // HEARTBEAT_S} by default)"
        )
    return beat
