"""A trial child dies with the `dm-tune run` that started it, whatever ends that run.

- Linux: the child asks the kernel for SIGKILL when its parent dies (`prctl(PR_SET_PDEATHSIG)`),
  then checks that the parent it was started by is still its parent (it may have died first).
  The kernel watches the parent *thread* that started the child: children must be started from
  a thread that lives as long as the run (dm-tune starts them from the main thread).
- Other POSIX systems (macOS): a daemon thread polls the parent pid; when it changes, the child
  removes its trial folder and exits.
- Windows: the parent puts every child in one job object with
  JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE; the kernel closes the job's last handle when the parent
  dies, which ends the children (implemented, not tested on this project's CI).

A child killed this way leaves its `dm-tune-trial-*` folder; objectives.launch removes the
folders of dead owners at the next run.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from typing import Any

PARENT_ENV = "DM_TUNE_PARENT_PID"  # the pid of the run that started this child
FOLDER_ENV = "DM_TUNE_TRIAL_DIR"  # the child's private folder, removed by the watchdog
PR_SET_PDEATHSIG = 1
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x2000
_JOB_EXTENDED_LIMIT_INFORMATION = 9
_job: Any = None  # the Windows job handle; kept open for this process's lifetime


def child_env(folder: str) -> dict[str, str]:
    """Environment of a new trial child: who its parent is, and its folder."""
    return {**os.environ, PARENT_ENV: str(os.getpid()), FOLDER_ENV: folder}


def die_with_parent() -> None:
    """Called first thing in a trial child: end this process when the parent run dies."""
    expected = os.environ.get(PARENT_ENV)
    if expected is None or os.name == "nt":
        return  # started by hand, or Windows (the parent's job object ends us)
    parent = int(expected)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            _start_watchdog(parent)
        if os.getppid() != parent:  # the parent died before prctl took effect
            _orphaned()
        return
    _start_watchdog(parent)


def _orphaned() -> None:
    folder = os.environ.get(FOLDER_ENV)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(1)


def _start_watchdog(parent: int, poll_s: float = 0.5) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        _orphaned()

    threading.Thread(target=watch, name="dm-tune-parent-watch", daemon=True).start()


def bind_to_this_process(pid: int, handle: int | None) -> None:
    """Windows: put a new child in this process's kill-on-close job (no-op elsewhere)."""
    if os.name != "nt" or handle is None:
        return
    try:
        _assign(handle)
    except OSError:
        pass  # e.g. nested jobs refused on old Windows: the child outlives a killed run


def _assign(handle: int) -> None:  # pragma: no cover - Windows only
    global _job
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    if _job is None:

        class IoCounters(ctypes.Structure):
            _fields_ = [(n, ctypes.c_ulonglong) for n in ("r", "w", "o", "rb", "wb", "ob")]

        class BasicLimits(ctypes.Structure):
            _fields_ = [
                ("PerProcessUserTimeLimit", ctypes.c_int64),
                ("PerJobUserTimeLimit", ctypes.c_int64),
                ("LimitFlags", wintypes.DWORD),
                ("MinimumWorkingSetSize", ctypes.c_size_t),
                ("MaximumWorkingSetSize", ctypes.c_size_t),
                ("ActiveProcessLimit", wintypes.DWORD),
                ("Affinity", ctypes.c_size_t),
                ("PriorityClass", wintypes.DWORD),
                ("SchedulingClass", wintypes.DWORD),
            ]

        class ExtendedLimits(ctypes.Structure):
            _fields_ = [
                ("BasicLimitInformation", BasicLimits),
                ("IoInfo", IoCounters),
                ("ProcessMemoryLimit", ctypes.c_size_t),
                ("JobMemoryLimit", ctypes.c_size_t),
                ("PeakProcessMemoryUsed", ctypes.c_size_t),
                ("PeakJobMemoryUsed", ctypes.c_size_t),
            ]

        kernel32.CreateJobObjectW.restype = wintypes.HANDLE
        job = kernel32.CreateJobObjectW(None, None)
        if not job:
            raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
        info = ExtendedLimits()
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        ok = kernel32.SetInformationJobObject(
            job, _JOB_EXTENDED_LIMIT_INFORMATION, ctypes.byref(info), ctypes.sizeof(info)
        )
        if not ok:
            raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
        _job = job
    if not kernel32.AssignProcessToJobObject(_job, wintypes.HANDLE(handle)):
        raise ctypes.WinError(ctypes.get_last_error())  # type: ignore[attr-defined]
