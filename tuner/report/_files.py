"""Where the report and the trial list go: checked before anything is read or written, then
written atomically (a temporary file renamed: never a half-written report)."""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from tuner.errors import UserError
from tuner.profile import Prefer
from tuner.yaml_io import write_atomic


def check_output(path: Path) -> Path:
    """`path` can be written: its folder exists and is writable, and it is not a folder."""
    if path.is_dir():
        raise UserError(f"{path} is a directory; name a file, e.g. -o {path / 'report.html'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {path}: the directory {parent} is not writable")
    return path


def write_output(path: Path, text: str) -> None:
    check_output(path)
    try:
        write_atomic(path, text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_report(
    study: optuna.Study,
    *,
    storage: str,
    output: Path,
    prefer: Prefer = Prefer.BALANCED,
    profile_path: Path | None = None,
) -> Path:
    """Compute the report's data, draw it as one self-contained HTML file and write it."""
    from tuner.profile import ProfileError, load_profile
    from tuner.report._data import report_data
    from tuner.report._html import render_html

    check_output(output)
    profile = None
    if profile_path is not None:
        try:
            profile = load_profile(profile_path)
        except ProfileError as exc:
            raise UserError(str(exc)) from None
    data = report_data(
        study,
        storage=storage,
        prefer=prefer,
        profile=profile,
        profile_path=str(profile_path) if profile_path is not None else None,
    )
    write_output(output, render_html(data))
    return output
