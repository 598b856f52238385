"""The Optuna study: `RunSettings` and `tune()` (what `dm-tune run` calls), preparing a study,
the run loop and objective, what a trial and the study record (`TrialRecord`, `StudyRecord`:
the only readers and writers of Optuna's attributes), pruning, spills, selection of the best
feasible trial, confirmation runs, progress lines, the end-of-run summary and storage."""

from tuner.study._confirm import (
    REFERENCE,
    Remeasure,
    apply_confirmations,
    confirm,
    confirm_trials,
    reference_trial,
    top_candidates,
)
from tuner.study._constraints import (
    CONSTRAINT_KEY,
    CTX_CONSTRAINT_KEY,
    LEGACY_CONSTRAINTS_ATTR,
    constraint_values,
    set_constraints,
)
from tuner.study._interrupt import Terminated, exit_code, termination_as_interrupt
from tuner.study._prepare import check_options, settings_digest
from tuner.study._progress import Progress, describe_settings
from tuner.study._pruning import Point, decide
from tuner.study._selection import (
    PREFER_CHOICES,
    candidates,
    choose_best,
    dominates,
    is_feasible,
    pareto_front,
)
from tuner.study._settings import RunSettings
from tuner.study._share import counted_trials
from tuner.study._spill import (
    SpillPoint,
    like_key,
    mark_spills,
    spill_reason,
    spilled_over_budget_mb,
)
from tuner.study._storage import DEFAULT_STORAGE, check_storage, display_url, storage_failure
from tuner.study._study import DIRECTIONS, make_objective
from tuner.study._study_lookup import load_dm_tune_study, load_existing_study
from tuner.study._study_name import check_study_name
from tuner.study._study_record import StudyRecord
from tuner.study._summary import floor_cost, render_summary
from tuner.study._trial_record import (
    SPILL_ATTR,
    TrialRecord,
    enqueue,
    made_trial,
    metrics_of,
    partial_figures,
    record_settings,
    role_of,
    settings_of,
    status_of,
    vram_predicted_mb,
)
from tuner.study._tune import tune
from tuner.study._workers import (
    Worker,
    parse_gpus,
    plan_workers,
    run_on_gpus,
    run_workers,
    trials_only,
)

__all__ = [
    "CONSTRAINT_KEY",
    "CTX_CONSTRAINT_KEY",
    "DEFAULT_STORAGE",
    "DIRECTIONS",
    "LEGACY_CONSTRAINTS_ATTR",
    "PREFER_CHOICES",
    "REFERENCE",
    "SPILL_ATTR",
    "Point",
    "Progress",
    "Remeasure",
    "RunSettings",
    "SpillPoint",
    "StudyRecord",
    "Terminated",
    "TrialRecord",
    "Worker",
    "apply_confirmations",
    "candidates",
    "check_options",
    "check_storage",
    "check_study_name",
    "choose_best",
    "confirm",
    "confirm_trials",
    "constraint_values",
    "counted_trials",
    "decide",
    "describe_settings",
    "display_url",
    "dominates",
    "enqueue",
    "exit_code",
    "floor_cost",
    "is_feasible",
    "like_key",
    "load_dm_tune_study",
    "load_existing_study",
    "made_trial",
    "make_objective",
    "mark_spills",
    "metrics_of",
    "pareto_front",
    "parse_gpus",
    "partial_figures",
    "plan_workers",
    "record_settings",
    "reference_trial",
    "render_summary",
    "role_of",
    "run_on_gpus",
    "run_workers",
    "set_constraints",
    "settings_digest",
    "settings_of",
    "spill_reason",
    "spilled_over_budget_mb",
    "status_of",
    "storage_failure",
    "termination_as_interrupt",
    "top_candidates",
    "trials_only",
    "tune",
    "vram_predicted_mb",
]
