"""What dm-tune keeps of a whole study: `StudyRecord.from_study` reads it back typed, and
`record_study` / `record_confirmations` store it, as Optuna study user attributes named like the
record's fields (the format the dashboard and older studies hold). A study made by an older
dm-tune lacks some of them: those read as None (or empty)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import optuna

Entries = dict[str, dict[str, Any]]  # by trial number or session, as strings (JSON keys)


def _dict(v: Any) -> dict[str, Any] | None:
    return dict(v) if isinstance(v, dict) else None


def _entries(v: Any) -> Entries:
    return (
        {str(k): dict(e) for k, e in v.items() if isinstance(e, dict)}
        if isinstance(v, dict)
        else {}
    )


@dataclass(frozen=True)
class StudyRecord:
    """The study's model, machine, build, workload and rules (written once, when it is made),
    then the confirmations before export."""

    model: dict[str, Any] | None = None  # path, file, size_bytes, sha256, architecture...
    hardware: dict[str, Any] | None = None  # tuner.hardware: cpu, cores, ram_mb, os, gpus
    llama_cpp_version: str | None = None
    gpu_offload: bool | None = None  # the llama-cpp-python build offloads to a GPU
    workload_spec: dict[str, Any] | None = None  # what the trials' children measure
    confirm_spec: dict[str, Any] | None = None  # what the confirmation runs measure
    context_floor: dict[str, Any] | None = None  # ContextFloor.to_profile(); None: made before
    objectives: list[str] | None = None  # the names of trial.values, in order
    # the knobs that change the model's answers (search space's flag); None: made before
    quality_affecting: list[str] | None = None
    # the machine type it measures (Context.machine); None: made before, any machine joins
    machine: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None  # the fingerprint a resume must match; written last
    confirmed: Entries = field(default_factory=dict)  # trial number -> its confirmation
    reference_runs: Entries = field(default_factory=dict)  # session -> the app profile's runs

    @classmethod
    def from_study(cls, study: optuna.Study) -> StudyRecord:
        a = study.user_attrs
        version, offload, names, quality = (
            a.get("llama_cpp_version"),
            a.get("gpu_offload"),
            a.get("objectives"),
            a.get("quality_affecting"),
        )
        return cls(
            model=_dict(a.get("model")),
            hardware=_dict(a.get("hardware")),
            llama_cpp_version=None if version is None else str(version),
            gpu_offload=None if offload is None else bool(offload),
            workload_spec=_dict(a.get("workload_spec")),
            confirm_spec=_dict(a.get("confirm_spec")),
            context_floor=_dict(a.get("context_floor")),
            objectives=[str(n) for n in names] if isinstance(names, list) else None,
            quality_affecting=([str(k) for k in quality] if isinstance(quality, list) else None),
            machine=_dict(a.get("machine")),
            settings=_dict(a.get("settings")),
            confirmed=_entries(a.get("confirmed")),
            reference_runs=_entries(a.get("reference_runs")),
        )

    @property
    def gpus(self) -> list[dict[str, Any]]:
        """The machine's GPUs as recorded (empty: none, or not recorded)."""
        return list((self.hardware or {}).get("gpus") or [])


def record_study(study: optuna.Study, record: StudyRecord) -> None:
    """Store a new study's record, `settings` last: a study with settings is complete (a run
    that died before it made a study to start again)."""
    for f in fields(record):
        if f.name not in ("settings", "confirmed", "reference_runs"):
            study.set_user_attr(f.name, getattr(record, f.name))
    study.set_user_attr("settings", record.settings)


def record_confirmations(study: optuna.Study, confirmed: Entries, reference_runs: Entries) -> None:
    """Every confirmation so far (tuner/study/_confirm.py)."""
    study.set_user_attr("confirmed", confirmed)
    study.set_user_attr("reference_runs", reference_runs)
