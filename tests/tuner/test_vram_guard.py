"""The study's use of the VRAM predictor, on the real demo GGUF (GPU readings stand-ins: the
numbers a probe and trials would report on a GPU machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.machine import Probe
from tuner.paths import default_config
from tuner.space import Machine, load_search_space_config, resolve
from tuner.study._prepare import _vram_guard
from tuner.vram import VRAM_MARGIN_MB, VramGuard, VramPrediction, free_vram_need_mb, read_gguf


def _space() -> object:
    cfg = load_search_space_config(default_config("search_space.yaml"))
    return resolve(cfg, Machine(16, 31, True, min_ctx=800, trained_ctx=8192))


def _probe(smoke_vram_mb: float) -> Probe:
    return Probe("0.3.36", True, "", (556, 653), smoke_vram_mb=smoke_vram_mb)


def test_a_budget_no_setting_can_meet_is_refused(demo_model: Path) -> None:
    info = read_gguf(demo_model)
    with pytest.raises(UserError, match="no setting fits a VRAM budget of 500 MB"):
        _vram_guard(info, _probe(900.0), _space(), 500.0)  # type: ignore[arg-type]


def test_overhead_is_measured_then_learned(demo_model: Path) -> None:
    info = read_gguf(demo_model)
    guard = _vram_guard(info, _probe(600.0), _space(), 6144.0)  # type: ignore[arg-type]
    assert 0 < guard.overhead_mb <= 600
    full = {"n_gpu_layers": 31, "n_ctx": 2048, "n_batch": 512}
    pred = guard.predict(full)
    assert pred.total_mb > pred.overhead_mb and not guard.over_budget(pred)
    guard.learn(full, pred, pred.total_mb + 100)  # this machine's trials read 100 MB more
    assert guard.predict(full).total_mb == pytest.approx(pred.total_mb + 100)


def test_clearly_over_budget_settings_are_skipped(demo_model: Path) -> None:
    info = read_gguf(demo_model)
    guard = _vram_guard(info, _probe(600.0), _space(), 1000.0)  # type: ignore[arg-type]
    assert guard.over_budget(guard.predict({"n_gpu_layers": 31, "n_ctx": 8192, "n_batch": 1024}))


def _pred(total_mb: float) -> VramPrediction:
    return VramPrediction(
        weights_mb=total_mb - 300, kv_mb=100, compute_mb=100, overhead_mb=100, total_mb=total_mb
    )


def test_the_guard_compares_the_need_not_the_raw_peak(demo_model: Path) -> None:
    # A predicted peak under the budget whose need (peak + margin) is clearly over it is skipped:
    # the study could never keep it, as its tier could not be selected with the budget free.
    guard = VramGuard(info=read_gguf(demo_model), budget_mb=4000.0, overhead_mb=0.0)
    assert guard.over_budget(_pred(3990.0))
    assert guard.need_mb(_pred(3990.0)) == free_vram_need_mb(3990.0) == 3990 + VRAM_MARGIN_MB


@pytest.mark.parametrize(
    ("need_over_budget_mb", "skipped"),
    [(0.0, False), (199.0, False), (201.0, True), (1000.0, True)],  # 5 % of 4000: 200
)
def test_a_need_within_the_prediction_tolerance_is_still_measured(
    demo_model: Path, need_over_budget_mb: float, skipped: bool
) -> None:
    guard = VramGuard(info=read_gguf(demo_model), budget_mb=4000.0, overhead_mb=0.0)
    pred = _pred(4000.0 + need_over_budget_mb - VRAM_MARGIN_MB)
    assert guard.need_mb(pred) == 4000.0 + need_over_budget_mb
    assert guard.over_budget(pred) is skipped


def test_the_skip_reason_gives_the_predicted_peak_and_the_need(demo_model: Path) -> None:
    guard = VramGuard(info=read_gguf(demo_model), budget_mb=4000.0, overhead_mb=0.0)
    reason = guard.skip_reason(_pred(4500.0))
    assert "predicted peak 4500 MB" in reason
    assert f"needs {4500 + VRAM_MARGIN_MB:.0f} MB free" in reason
    assert "budget of 4000 MB" in reason and "not loaded" in reason
