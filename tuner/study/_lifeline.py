"""A worker of `dm-tune run --gpus` stops when its parent is gone, however the parent ended
(kill -9, a crash, a closed console or Task Manager on Windows): as if Ctrl-C reached it, so
its finished trials are kept, the trial it measured is marked interrupted, and the same
command resumes the study.

The parent names itself (pid and creation time: a reused pid is another process) in the
worker's environment; the worker's daemon thread polls it with psutil and, once it is gone,
points the worker's output (a pipe nobody reads any more) at the null device and interrupts
the main thread. Trial children die with their worker by another path (objectives/lifeline.py).
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

import psutil

from tuner.study._interrupt import Terminated

PARENT_ENV = "DM_TUNE_WORKER_PARENT"  # "<pid>:<create time>" of the `dm-tune run --gpus` parent
POLL_S = 1.0
_SAME_START_S = 0.01  # two readings of one process's creation time agree within this


class ParentGone(Terminated):
    """The worker's parent `dm-tune run --gpus` ended: handled wherever Ctrl-C is."""

    def __init__(self) -> None:
        super().__init__(signal.SIGINT)
        self.why = "the end of its parent `dm-tune run --gpus` (killed?)"


def parent_env() -> dict[str, str]:
    """What the parent adds to each worker's environment: this process, named for good."""
    me = psutil.Process()
    return {PARENT_ENV: f"{me.pid}:{me.create_time()!r}"}


def _parent(text: str) -> psutil.Process | None:
    """The named parent, or None when it is already gone (or its pid is another process's)."""
    pid, _, created = text.partition(":")
    try:
        p = psutil.Process(int(pid))
        if abs(p.create_time() - float(created)) > _SAME_START_S:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None
    return p


def alive(p: psutil.Process) -> bool:
    """Running, and not a zombie that its own parent has yet to reap (psutil's is_running
    checks the creation time, so a reused pid is not taken for it)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _interrupt_main() -> None:
    """A SIGINT for the main thread. On POSIX a real signal aimed at it, so a blocking wait
    (the measurement lock's flock) is woken too; elsewhere `interrupt_main`, which the main
    thread sees between bytecodes (dm-tune's waits poll)."""
    if hasattr(signal, "pthread_kill"):
        ident = threading.main_thread().ident
        if ident is not None:
            signal.pthread_kill(ident, signal.SIGINT)
            return
    _thread.interrupt_main(signal.SIGINT)


def _silence_output() -> None:
    """Nobody reads the worker's stdout and stderr any more: a write would raise
    BrokenPipeError where the interruption should land."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            os.dup2(null, fd)
    finally:
        os.close(null)


def _watch(
    parent: psutil.Process | None,
    gone: threading.Event,
    done: threading.Event,
    poll_s: float,
    on_gone: Callable[[], None],
) -> None:
    while parent is not None and alive(parent):
        if done.wait(poll_s):
            return
    if done.is_set():
        return
    gone.set()
    on_gone()


@contextmanager
def stop_when_parent_gone(
    environ: Mapping[str, str] = os.environ, poll_s: float = POLL_S
) -> Iterator[None]:
    """Inside this block, a worker whose parent (named in `DM_TUNE_WORKER_PARENT`) is gone gets
    ParentGone in its main thread; Ctrl-C still raises KeyboardInterrupt. Outside a worker (no
    such variable), or off the main thread (signals need it), nothing is watched."""
    text = environ.get(PARENT_ENV)
    if not text or threading.current_thread() is not threading.main_thread():
        yield
        return
    gone, done = threading.Event(), threading.Event()
    before = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if gone.is_set():
            raise ParentGone()
        if callable(before):
            before(signum, frame)
        elif before != signal.SIG_IGN:
            raise KeyboardInterrupt

    def on_gone() -> None:
        _silence_output()
        _interrupt_main()

    signal.signal(signal.SIGINT, on_sigint)
    watcher = threading.Thread(
        target=_watch,
        args=(_parent(text), gone, done, poll_s, on_gone),
        name="dm-tune-worker-lifeline",
        daemon=True,
    )
    watcher.start()
    try:
        yield
    finally:
        done.set()
        signal.signal(signal.SIGINT, before)
