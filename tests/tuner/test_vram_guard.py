"""The study's use of the VRAM predictor, on the real demo GGUF (GPU readings stand-ins: the
numbers a probe and trials would report on a GPU machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.errors import UserError
from tuner.gguf_info import read_gguf
from tuner.paths import default_config
from tuner.prepare import _vram_guard
from tuner.probe import Probe
from tuner.search_space import Machine, load_search_space_config, resolve


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
    guard.learn(pred, pred.total_mb + 100)  # this machine's trials read 100 MB more
    assert guard.predict(full).total_mb == pytest.approx(pred.total_mb + 100)


def test_clearly_over_budget_settings_are_skipped(demo_model: Path) -> None:
    info = read_gguf(demo_model)
    guard = _vram_guard(info, _probe(600.0), _space(), 700.0)  # type: ignore[arg-type]
    assert guard.over_budget(guard.predict({"n_gpu_layers": 31, "n_ctx": 8192, "n_batch": 1024}))
