"""Open an existing study for reading (export, report, verify) without creating anything."""

from __future__ import annotations

import optuna

from tuner.errors import UserError
from tuner.storage import check_storage
from tuner.study_name import check_study_name


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
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    names = [
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    ]
    if not names:
        raise UserError(f"no study in {storage}; run `dm-tune run` first")
    if study_name is None:
        if len(names) > 1:
            raise UserError(
                f"{storage} holds {len(names)} studies ({', '.join(sorted(names))}); "
                "pick one with --study NAME"
            )
        study_name = names[0]
    elif study_name not in names:
        raise UserError(
            f"no study named '{study_name}' in {storage}; it has: {', '.join(sorted(names))}"
        )
    return optuna.load_study(study_name=study_name, storage=storage)
