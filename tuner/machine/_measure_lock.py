"""One measurement at a time per machine resource: a second `dm-tune run` (or verify, soak,
export --confirm) on the same cores or GPU would slow both and corrupt both results.

Each resource ("cpu", "gpu0", ...) is a file in `lock_dir()`, locked with `fcntl.flock`
(POSIX) or `msvcrt.locking` (Windows). The kernel drops either lock when its holder's process
ends, however it ends (kill -9 included), so a lock file left behind never blocks anyone: only
a live holder does. The holder writes who it is into the file for the waiting message.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tuner.echo import Echo
from tuner.errors import UserError
from tuner.paths import cache_dir

LOCK_DIR_ENV = "DM_TUNE_LOCK_DIR"
# Set by `dm-tune run --gpus` for each worker: its cores ("0-7"; "" where the OS can't pin).
WORKER_CORES_ENV = "DM_TUNE_WORKER_CORES"
_WIN_LOCK_OFFSET = 1 << 20  # Windows locks are mandatory: lock a byte past the holder's text
_WIN_POLL_S = 1.0


def lock_dir() -> Path:
    """Where the lock files live: $DM_TUNE_LOCK_DIR, else `locks/` in dm-tune's cache."""
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env).expanduser() if env else cache_dir() / "locks"


def measured_resources(gpu_indices: list[int]) -> list[str]:
    """What a measurement here shares with any other: the CPU always (llama.cpp's threads are
    not pinned to cores, and a GPU trial's host side runs there too), plus every GPU it can use
    (CUDA_VISIBLE_DEVICES, when it lists indices, narrows them).

    A worker of `dm-tune run --gpus` locks its own cores ("cpu0-7") instead of the whole CPU,
    which its parent holds for all workers; pinned to disjoint cores, they don't wait for each
    other. Where the OS can't pin (macOS) a worker locks no CPU resource: only its GPU.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and all(p.strip().isdigit() for p in visible.split(",") if p.strip()):
        allowed = {int(p) for p in visible.split(",") if p.strip()}
        gpu_indices = [i for i in gpu_indices if i in allowed]
    cores = os.environ.get(WORKER_CORES_ENV)
    cpu = ["cpu"] if cores is None else [f"cpu{cores}"] if cores else []
    return [*cpu, *(f"gpu{i}" for i in sorted(set(gpu_indices)))]


def this_machines_resources() -> list[str]:
    from objectives.nvml import list_gpus

    return measured_resources([g.index for g in list_gpus()])


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as written in its file."""

    command: str
    pid: int
    label: str  # "study 'x'" or "profile p.yaml"
    since: float

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.since)
        fmt = "%H:%M:%S" if when.date() == datetime.now().date() else "%Y-%m-%d %H:%M:%S"
        label = f" ({self.label})" if self.label else ""
        return f"{self.command} pid {self.pid}{label} since {when.strftime(fmt)}"


def read_holder(path: Path) -> Holder | None:
    """The holder written in a lock file; None while it is being written or unreadable."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return Holder(str(d["command"]), int(d["pid"]), str(d["label"]), float(d["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _FileLock:
    """One exclusive lock on one file, released by close() or by the kernel at process end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # O_RDWR without O_TRUNC: the current holder's text stays readable while we wait.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)

    def try_lock(self) -> bool:
        if os.name == "nt":
            import msvcrt

            os.lseek(self.fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            try:
                msvcrt.locking(self.fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            except OSError:
                return False
            return True
        import fcntl

        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def lock(self) -> None:
        """Block until the lock is ours (Ctrl-C interrupts the wait)."""
        if os.name == "nt":  # LK_LOCK gives up after 10 s: poll instead
            while not self.try_lock():
                time.sleep(_WIN_POLL_S)
            return
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def write(self, holder: Holder) -> None:
        text = json.dumps(holder.__dict__).encode()
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, text)

    def close(self) -> None:
        if os.name == "nt":
            import msvcrt

            os.lseek(self.fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            try:
                msvcrt.locking(self.fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]
            except OSError:
                pass
        else:
            os.ftruncate(self.fd, 0)  # a free lock names no holder
        os.close(self.fd)  # releases the flock


_held: dict[str, _FileLock] = {}  # resource -> this process's lock on it


@contextmanager
def measurement_lock(
    command: str,
    label: str = "",
    *,
    wait: bool = True,
    echo: Echo = print,
    resources: list[str] | None = None,
) -> Iterator[None]:
    """Hold the measurement lock of every resource (default: this machine's) for the block.

    Taken in a fixed order (cpu, gpu0, gpu1, ...) so two holders never deadlock. A taken lock
    makes this wait with a message naming the holder, or with `wait=False` raise a UserError
    with that message before anything else happens. Nested use in one process is a no-op.
    """
    names = sorted(resources if resources is not None else this_machines_resources())
    names = [n for n in names if n not in _held]
    mine: list[str] = []
    folder = lock_dir()
    try:
        for name in names:
            lk = _open(folder, name)
            try:
                _acquire(lk, name, wait, echo)
            except BaseException:
                os.close(lk.fd)  # never held: leave the holder's text alone
                raise
            lk.write(Holder(command, os.getpid(), label, time.time()))
            _held[name] = lk
            mine.append(name)
        yield
    finally:
        for name in reversed(mine):
            _held.pop(name).close()


def _open(folder: Path, name: str) -> _FileLock:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return _FileLock(folder / f"{name}.lock")
    except OSError as exc:
        raise UserError(
            f"cannot open the measurement lock in {folder} ({exc.strerror or exc}); "
            f"point {LOCK_DIR_ENV} at a folder you can write"
        ) from None


def _acquire(lk: _FileLock, name: str, wait: bool, echo: Echo) -> None:
    if lk.try_lock():
        return
    holder = read_holder(lk.path)
    who = holder.describe() if holder else "another dm-tune process"
    what = (
        "CPU"
        if name == "cpu"
        else f"CPU cores {name.removeprefix('cpu')}"
        if name.startswith("cpu")
        else f"GPU {name.removeprefix('gpu')}"
    )
    if not wait:
        raise UserError(
            f"the measurement lock on the {what} is held by {who}: measuring at the same "
            "time would corrupt both results; run again when it has finished, or without "
            "--no-wait to wait for it"
        )
    echo(
        f"waiting for the measurement lock on the {what} held by {who} ... "
        "(two measurements at once corrupt each other's figures; Ctrl-C to stop)"
    )
    lk.lock()
    echo(f"measurement lock on the {what} acquired")


def relabel(label: str) -> None:
    """Rewrite the holder's label in the locks this process holds (a run's study name is
    known only after its inputs are checked, which happens under the lock)."""
    for lk in _held.values():
        holder = read_holder(lk.path)
        if holder is not None:
            lk.write(Holder(holder.command, holder.pid, label, holder.since))
