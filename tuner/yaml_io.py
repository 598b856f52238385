"""Load user YAML into strict pydantic models; turn every problem into a one-line UserError."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tuner.errors import UserError

# owned by the profile loader (the app vendors it: it imports nothing from dm-tune)
from tuner.profile.llm_profile import describe_yaml_error


class StrictModel(BaseModel):
    """The base of every model a user file is read into: a typo such as `n_gpu_layer` is an
    error (extra="forbid"), and a loaded config can't be changed by accident (frozen)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


M = TypeVar("M", bound=BaseModel)
TMP_MARK = ".dm-tune-tmp"  # our temporary files: `.<name>.<pid>.dm-tune-tmp`


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def describe_validation_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = _where(tuple(err["loc"]))
    if err["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    if err["type"] == "missing":
        return f"missing key '{where}'"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{msg}{more}" if not err["loc"] else f"'{where}': {msg}{more}"


def load_yaml(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: {describe_yaml_error(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def load_model(path: Path, model: type[M]) -> M:
    """Parse `path` as `model`; unknown keys, wrong types and bad ranges are UserErrors."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{path}: {describe_validation_error(exc)}; fix the file") from None


def _umask() -> int:
    """The process umask: read from /proc on Linux (setting it, even briefly, races threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate it there: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def _remove_stale_temps(target: Path) -> None:
    """Temp files a killed writer of `target` left behind (its pid is gone)."""
    head = f".{target.name}."
    for tmp in target.parent.iterdir():
        pid = tmp.name[len(head) : -len(TMP_MARK)]
        if not (tmp.name.startswith(head) and tmp.name.endswith(TMP_MARK) and pid.isdigit()):
            continue
        if int(pid) == os.getpid() or not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file next to the target and rename: never a half-written file.

    A symlink is written through (its target is replaced, the link stays); an existing file
    keeps its mode, a new one gets the umask's (0644 under the usual umask 022), so an app
    running as another user can read it. Temp files of killed writers are removed."""
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    _remove_stale_temps(target)
    tmp = target.parent / f".{target.name}.{os.getpid()}{TMP_MARK}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
