"""Shared by the benchmark scripts' tests."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from objectives.workload import Workload
from tuner.yaml_io import load_model


@pytest.fixture
def workload_study(tmp_path: Path, quick_workload: Path) -> str:
    """The storage URL of a study 'demo' that records only the quick workload's spec: what
    `anchors.py measure --storage` reads the turn to measure from."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name="demo", directions=["maximize"] * 2)
    study.set_user_attr("workload_spec", load_model(quick_workload, Workload).spec())
    return storage
