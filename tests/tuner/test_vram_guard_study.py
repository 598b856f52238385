"""The VRAM guard inside a study (tuner/study/_study.py `make_objective`): a setting predicted over
the budget is never loaded, and a resumed study's guard starts from what its earlier trials
measured.

Real: the demo GGUF the guard predicts from, the study and its SQLite file, the trial children
(stand-ins printing canned metrics). Simulated, as there is no GPU here: a build that offloads
(the probe's `gpu_offload`), its VRAM read from a llama.cpp log recorded on a CUDA machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from stand_in_study import StandInSpace, stand_in_context

from objectives.launch import ChildResult, ChildSpec, ColdLauncher, Watcher
from tests.conftest import stand_in
from tuner.study import DIRECTIONS, make_objective
from tuner.vram import VramGuard, read_gguf

DATA = Path(__file__).resolve().parents[1] / "data"
ONE_GPU = "llama_log_cuda_llamafile_552.txt"  # 31 layers on CUDA0: 7602.71 MiB of buffers
LAYERS = 31  # the demo model's offloadable layers


class CountingLauncher:
    """The stand-in child, started for real; keeps the spec of every child it starts."""

    def __init__(self) -> None:
        self.inner = ColdLauncher(stand_in("canned"), sample_gpu=False)
        self.loaded: list[dict[str, Any]] = []

    def run(
        self, spec: ChildSpec, timeout_s: float, *, watcher: Watcher | None = None
    ) -> ChildResult:
        self.loaded.append(dict(spec.to_json_dict()["params"]))
        return self.inner.run(spec, timeout_s, watcher=watcher)


def _params(ngl: int, threads: int = 1) -> dict[str, Any]:
    return {"n_gpu_layers": ngl, "n_ctx": 4096, "n_batch": 512, "n_threads": threads}


def _run(
    tmp_path: Path, demo_model: Path, budget_mb: float, settings: list[dict[str, Any]]
) -> tuple[optuna.Study, VramGuard, CountingLauncher]:
    """One `dm-tune run` of the study in tmp_path (created, or resumed from its SQLite file)
    with a fresh guard, as a new process would have, measuring `settings` in order."""
    ctx = stand_in_context(tmp_path, budget_mb, StandInSpace(LAYERS, batch=True))
    guard = VramGuard(info=read_gguf(demo_model), budget_mb=budget_mb, overhead_mb=0.0)
    ctx.vram_guard = guard
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/dm-tune.db",
        study_name="guard",
        directions=DIRECTIONS,
        load_if_exists=True,
    )
    launcher = CountingLauncher()
    objective = make_objective(ctx, study, launcher)
    for params in settings:
        study.enqueue_trial(params)
        study.optimize(objective, n_trials=1)
    return study, guard, launcher


def test_a_setting_predicted_over_the_budget_is_recorded_and_never_loaded(
    tmp_path: Path, demo_model: Path
) -> None:
    # the demo model's need (predicted peak + margin): 537 MB with every layer, 382 MB with none;
    # 537 MB is more than 5 % over a 500 MB budget
    study, _, launcher = _run(tmp_path, demo_model, 500.0, [_params(LAYERS), _params(0)])
    skipped, loaded = study.get_trials()  # as stored in the SQLite file

    assert skipped.state == TrialState.PRUNED
    assert skipped.user_attrs["status"] == "over_budget_predicted"
    assert "needs 537 MB free" in skipped.user_attrs["reason"]
    assert "not loaded" in skipped.user_attrs["reason"]
    assert skipped.user_attrs["vram_predicted_mb"] == pytest.approx(280.4)
    assert "metrics" not in skipped.user_attrs
    assert loaded.state == TrialState.COMPLETE and "vram_predicted" in loaded.user_attrs
    assert [p["n_gpu_layers"] for p in launcher.loaded] == [0]  # only the one that fits


def test_a_resumed_study_predicts_from_what_its_earlier_trials_measured(
    tmp_path: Path, demo_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first run loads every layer and measures 7602.71 MB, far above the GGUF's prediction
    # (this machine's overhead, as the guard learns it).
    monkeypatch.setenv("DM_TUNE_STAND_IN_LLAMA_LOG", str(DATA / ONE_GPU))
    study, _, _ = _run(tmp_path, demo_model, 20_000.0, [_params(LAYERS, threads=1)])
    assert study.trials[0].user_attrs["metrics"]["vram_mb"] == pytest.approx(7602.71)

    # The resumed run's guard starts at the probe's overhead again, and learns it from the study.
    again = _params(LAYERS, threads=2)  # another key: measured, not reused
    study, guard, launcher = _run(tmp_path, demo_model, 6000.0, [again])
    assert guard.predict(again).total_mb == pytest.approx(7602.71)
    resumed = study.trials[1]
    assert resumed.user_attrs["status"] == "over_budget_predicted"
    assert resumed.user_attrs["vram_predicted_mb"] == pytest.approx(7602.7)
    assert launcher.loaded == []
    # without the earlier trial the same setting would have been loaded
    unseeded = VramGuard(info=read_gguf(demo_model), budget_mb=6000.0, overhead_mb=0.0)
    assert not unseeded.over_budget(unseeded.predict(again))
