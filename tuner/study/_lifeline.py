"""A worker of `dm-tune run --gpus` stops when its parent is gone, however the parent ended
(kill -9, a crash, a closed console or Task Manager on Windows): as if Ctrl-C reached it, so
its finished trials are kept, the trial it measured is marked interrupted, and the same
command resumes the study.

The parent names itself (pid and creation time: a reused pid is another process) in the
worker's environment; the worker's daemon thread polls it with psutil and, once it is gone,
points the worker's output (a pipe nobody reads any more) at the null device and interrupts
the main thread. A progress line written to that broken pipe before the poll sees it does the
same (`Lifeline.guard`), instead of ending the worker with BrokenPipeError. Trial children
die with their worker by another path (objectives/lifeline.py).
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

import psutil

from tuner.echo import Echo
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
    """The named parent, or None when it is already gone (or its pid is another process's).
    Raises ValueError for a malformed name, psutil.AccessDenied where it can't be read."""
    pid, _, created = text.partition(":")
    try:
        p = psutil.Process(int(pid))
        same = abs(p.create_time() - float(created)) <= _SAME_START_S
    except psutil.NoSuchProcess:
        return None
    return p if same else None


def alive(p: psutil.Process) -> bool:
    """Running, and not a zombie that its own parent has yet to reap (psutil's is_running
    checks the creation time, so a reused pid is not taken for it)."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # it exists: only a live process can refuse
        return True


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


class Lifeline:
    """A worker's watch on its parent (`watched` False: not a worker, nothing is watched;
    `parent` None: the parent was gone before the watch began)."""

    def __init__(self, parent: psutil.Process | None = None, watched: bool = False) -> None:
        self.parent = parent
        self.watched = watched
        self.gone = threading.Event()
        self.done = threading.Event()
        self._once = threading.Lock()

    def guard(self, echo: Echo) -> Echo:
        """`echo` for a worker: a write to the gone parent's pipe (which can come before the
        watch sees it gone) stops the run as the watch would, instead of failing it."""
        if not self.watched:
            return echo

        def guarded(line: str) -> None:
            try:
                echo(line)
            except OSError as exc:
                if not isinstance(exc, BrokenPipeError) and self.parent_alive():
                    raise
                if self._mark_gone():
                    raise ParentGone() from None

        return guarded

    def parent_alive(self) -> bool:
        return self.parent is not None and alive(self.parent)

    def _mark_gone(self) -> bool:
        """The first to see the parent gone (watch or pipe) silences the output; True once."""
        with self._once:
            if self.gone.is_set() or self.done.is_set():
                return False
            _silence_output()
            self.gone.set()
            return True

    def close(self) -> None:
        """The block is over: neither the watch nor a broken pipe interrupts any more."""
        with self._once:
            self.done.set()

    def watch(self, poll_s: float) -> None:
        while self.parent_alive():
            if self.done.wait(poll_s):
                return
        if self._mark_gone():
            _interrupt_main()


@contextmanager
def stop_when_parent_gone(
    environ: Mapping[str, str] = os.environ, poll_s: float = POLL_S
) -> Iterator[Lifeline]:
    """Inside this block, a worker whose parent (named in `DM_TUNE_WORKER_PARENT`) is gone gets
    ParentGone in its main thread; Ctrl-C still raises KeyboardInterrupt. Outside a worker (no
    such variable), or off the main thread (signals need it), nothing is watched."""
    text = environ.get(PARENT_ENV)
    if not text or threading.current_thread() is not threading.main_thread():
        yield Lifeline()
        return
    try:
        lifeline = Lifeline(_parent(text), watched=True)
    except (ValueError, psutil.AccessDenied):  # can't tell whether it lives: not watched
        yield Lifeline()
        return
    before = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if lifeline.gone.is_set():
            raise ParentGone()
        if callable(before):
            before(signum, frame)
        elif before != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    watcher = threading.Thread(
        target=lifeline.watch, args=(poll_s,), name="dm-tune-worker-lifeline", daemon=True
    )
    watcher.start()
    try:
        yield lifeline
    finally:
        lifeline.close()
        signal.signal(signal.SIGINT, before)
