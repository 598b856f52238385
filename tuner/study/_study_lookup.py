"""Open an existing study for reading (export, report, verify) without creating anything."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import optuna

from tuner.errors import UserError
from tuner.study._storage import check_storage, display_url
from tuner.study._study_name import check_study_name
from tuner.study._study_record import StudyRecord
from tuner.study._trial_record import TrialRecord


def load_existing_study(storage: str, study_name: str | None) -> optuna.Study:
    """The named study (or the only one) in `storage`; a clear error when there is none."""
    if study_name is not None:
        check_study_name(study_name)
    checked = check_storage(storage, read_only=True)
    if checked.sqlite_path is not None and not checked.sqlite_path.exists():
        raise UserError(
            f"no study database at {checked.sqlite_path}; run `dm-tune run` first "
            "or pass --storage URL"
        )
    if checked.sqlite_path is not None and not _has_optuna_tables(checked.sqlite_path):
        raise UserError(
            f"{checked.sqlite_path} holds no Optuna study (not a dm-tune study database); "
            "run `dm-tune run` first or pass --storage URL"
        )
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    names = [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
    if not names:
        raise UserError(f"no study in {display_url(storage)}; run `dm-tune run` first")
    if study_name is None:
        if len(names) > 1:
            raise UserError(
                f"{display_url(storage)} holds {len(names)} studies ({', '.join(sorted(names))}); "
                "pick one with --study NAME"
            )
        study_name = names[0]
    elif study_name not in names:
        raise UserError(
            f"no study named '{study_name}' in {display_url(storage)}; it has: "
            f"{', '.join(sorted(names))}"
        )
    return optuna.load_study(study_name=study_name, storage=storage)


def _has_optuna_tables(path: Path) -> bool:
    """The SQLite file has Optuna's schema. Read-only: Optuna itself would create the schema
    in any database it opens, so another program's file (or an empty one) is checked first."""
    try:
        with sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True) as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'"
            ).fetchone()
        return row is not None
    except sqlite3.Error:
        return False


def load_dm_tune_study(storage: str, study_name: str | None) -> optuna.Study:
    """load_existing_study, refusing a study that `dm-tune run` did not make (the report and the
    trial list read dm-tune's attributes)."""
    study = load_existing_study(storage, study_name)
    if StudyRecord.from_study(study).settings is None and not any(
        TrialRecord.from_frozen(t).llama_kwargs is not None
        for t in study.get_trials(deepcopy=False)
    ):
        raise UserError(
            f"study '{study.study_name}' in {display_url(storage)} was not made by `dm-tune run` "
            "(no dm-tune settings or trials); pick a dm-tune study with --study NAME"
        )
    return study
