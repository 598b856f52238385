"""One spawned trial child: its process, its private folder and its stderr file.

Two ways to start one (objectives.child handles both):
- `start(argv)`: the spec and result paths go on the command line; the child runs at once.
- `start_waiting(argv)`: the child imports llama_cpp, finds its devices, says
  `dm-tune-phase: ready` and waits on stdin for a line with the spec and result paths. After its
  model load it says `dm-tune-phase: loaded` and waits for a `go` line before it measures
  (objectives.launch decides when). This takes interpreter start-up off a trial's critical path.

Portable: a fresh interpreter (no fork), its own process group / session so that the whole tree
can be ended through psutil (`kill_tree`). A child dies with the run that started it
(objectives.lifeline); its folder names that run (`owner.json`), so the next run removes the
folders of runs that were killed (`remove_orphan_folders`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

from objectives import phases
from objectives.lifeline import bind_to_this_process, child_env

WAIT_FLAG = "--wait"
READY = phases.marker(phases.READY)
FOLDER_PREFIX = "dm-tune-trial-"
OWNER_FILE = "owner.json"


def this_process() -> dict[str, Any]:
    """Who owns a trial or a folder: host, pid and the pid's start time (pids are reused)."""
    import socket

    me = os.getpid()
    return {"host": socket.gethostname(), "pid": me, "created": psutil.Process(me).create_time()}


def owner_alive(owner: dict[str, Any]) -> bool:
    """Is this process (same host) still running? A reused pid has another start time."""
    try:
        created = psutil.Process(int(owner["pid"])).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
        return False
    return abs(created - float(owner.get("created", 0.0))) < 0.01


def remove_orphan_folders(root: Path | None = None) -> int:
    """Remove the trial folders whose run is gone (killed before it could clean up)."""
    import socket

    host = socket.gethostname()
    n = 0
    for folder in Path(root or tempfile.gettempdir()).glob(FOLDER_PREFIX + "*"):
        try:
            owner = json.loads((folder / OWNER_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            continue  # not ours to judge (no owner: an older dm-tune, or being created)
        if owner.get("host") == host and not owner_alive(owner):
            shutil.rmtree(folder, ignore_errors=True)
            n += 1
    return n


def kill_tree(pid: int, grace_s: float = 3.0) -> None:
    """Terminate a process and all its descendants, then kill what is left."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = [*root.children(recursive=True), root]
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)


def popen_kwargs() -> dict[str, Any]:
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    return {"start_new_session": True}


@dataclass
class Spawned:
    proc: subprocess.Popen[bytes]
    folder: Path
    waiting: bool  # started with start_waiting: needs its spec (and later "go") on stdin
    _err: IO[bytes] = field(repr=False)

    @property
    def spec_path(self) -> Path:
        return self.folder / "spec.json"

    @property
    def result_path(self) -> Path:
        return self.folder / "result.json"

    @property
    def err_path(self) -> Path:
        return self.folder / "stderr.txt"

    def stderr_text(self) -> str:
        return self.err_path.read_text("utf-8", errors="replace")

    def is_ready(self) -> bool:
        """A waiting child that has done its imports (or one that is already gone)."""
        return self.proc.poll() is not None or READY in self.stderr_text()

    def send(self, line: str) -> bool:
        """Write one line to a waiting child's stdin; False when the child is gone."""
        if self.proc.stdin is None:
            return False
        try:
            self.proc.stdin.write(line.encode("utf-8") + b"\n")
            self.proc.stdin.flush()
            return True
        except OSError:  # BrokenPipeError / EINVAL on Windows: the child has exited
            return False

    def give_spec(self, spec: dict[str, Any]) -> None:
        """Hand a waiting child its trial (a child that already died reads as its failure)."""
        self.spec_path.write_text(json.dumps(spec), encoding="utf-8")
        self.send(json.dumps({"spec": str(self.spec_path), "result": str(self.result_path)}))

    def end(self) -> None:
        """End the child's whole process tree now."""
        kill_tree(self.proc.pid)
        self.proc.wait()

    def close(self) -> None:
        """Release the pipes and the folder (the process must have ended)."""
        for f in (self.proc.stdin, self._err):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        shutil.rmtree(self.folder, ignore_errors=True)


def _spawn(argv: list[str], waiting: bool, spec: dict[str, Any] | None = None) -> Spawned:
    folder = Path(tempfile.mkdtemp(prefix=FOLDER_PREFIX))
    (folder / OWNER_FILE).write_text(json.dumps(this_process()), encoding="utf-8")
    err = (folder / "stderr.txt").open("wb")
    if waiting:
        args = [*argv, WAIT_FLAG]
    else:
        (folder / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
        args = [*argv, str(folder / "spec.json"), str(folder / "result.json")]
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if waiting else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=child_env(str(folder)),
            **popen_kwargs(),
        )
        bind_to_this_process(proc.pid, getattr(proc, "_handle", None))
    except BaseException:
        err.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Spawned(proc, folder, waiting, err)


def start(argv: list[str], spec: dict[str, Any]) -> Spawned:
    """A child that gets its spec and result paths on the command line and starts at once."""
    return _spawn(argv, False, spec)


def start_waiting(argv: list[str]) -> Spawned:
    """A child that prepares itself and waits on stdin for its spec (objectives.launch)."""
    return _spawn(argv, True)
