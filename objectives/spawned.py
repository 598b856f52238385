"""One spawned trial child: its process, its private folder and its stderr file.

Two ways to start one (objectives.child handles both):
- `start(argv)`: the spec and result paths go on the command line; the child runs at once.
- `start_waiting(argv)`: the child imports llama_cpp, finds its devices, says
  `dm-tune-phase: ready` and waits on stdin for a line with the spec and result paths. After its
  model load it says `dm-tune-phase: loaded` and waits for a `go` line before it measures
  (objectives.prewarm decides when). This takes interpreter start-up off a trial's critical path.

Portable: a fresh interpreter (no fork), its own process group / session so that the whole tree
can be ended through psutil (`kill_tree`).
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

WAIT_FLAG = "--wait"
READY = "dm-tune-phase: ready"


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
    folder = Path(tempfile.mkdtemp(prefix="dm-tune-trial-"))
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
            **popen_kwargs(),
        )
    except BaseException:
        err.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Spawned(proc, folder, waiting, err)


def start(argv: list[str], spec: dict[str, Any]) -> Spawned:
    """A child that gets its spec and result paths on the command line and starts at once."""
    return _spawn(argv, False, spec)


def start_waiting(argv: list[str]) -> Spawned:
    """A child that prepares itself and waits on stdin for its spec (objectives.prewarm)."""
    return _spawn(argv, True)
