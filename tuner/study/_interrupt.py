"""SIGTERM (and SIGHUP: a logout, a closed terminal) stop a run the way Ctrl-C does: the trial in
progress is marked interrupted, its child ended, and the same command resumes the study."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """The run got a termination signal; handled wherever Ctrl-C is."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.why = f"{self.args[0]} (the run was stopped)"


def _signals() -> list[signal.Signals]:
    return [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s]


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """Inside this block SIGTERM/SIGHUP raise Terminated (main thread only, like signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _raise) for s in _signals()}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def exit_code(exc: KeyboardInterrupt) -> int:
    """The shell's convention: 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


def describe(exc: KeyboardInterrupt) -> str:
    if isinstance(exc, Terminated):
        return f"interrupted by {exc.why}; re-run to redo it"
    return "interrupted by the user (Ctrl-C); re-run to redo it"
