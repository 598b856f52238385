"""The commands that show a finished study, printed at the end of `dm-tune run` and `export`."""

from __future__ import annotations

import shlex

from tuner.study import DEFAULT_STORAGE, display_url


def _only_study(storage: str, study: str) -> bool:
    """The storage holds this study and no other (then `--study` can be left out)."""
    import optuna

    from tuner.study import check_storage

    try:
        path = check_storage(storage, read_only=True).sqlite_path
        if path is not None and not path.is_file():
            return False  # never create a database just to look
        return optuna.study.get_all_study_names(storage) == [study]
    except Exception:  # unreadable here: name the study, the command still works
        return False


def inspect_commands(storage: str, study: str | None) -> list[str]:
    """The exact `dm-tune report` and `dm-tune dashboard` command lines for this study, with
    `--storage` and `--study` only where they differ from the defaults (the password masked)."""
    where = []
    if storage != DEFAULT_STORAGE:
        where = ["--storage", shlex.quote(display_url(storage))]
    named = [] if study is None or _only_study(storage, study) else ["--study", shlex.quote(study)]
    return [
        " ".join(["dm-tune", "report", *where, *named]),
        " ".join(["dm-tune", "dashboard", *where]),
    ]
