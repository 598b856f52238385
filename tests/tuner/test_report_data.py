"""The report's data (tuner/report/_data.py, _rows.py), without plotly: a synthetic study in
a real SQLite file, and every recorded benchmark database (copied: docs/ is never written)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from report_study import BUDGET, RECORDED, make_study, recorded_copy

from tuner.report import report_data, trial_rows
from tuner.report._data import BELOW_FLOOR, FEASIBLE, OVER_BUDGET, PRUNED, trial_points
from tuner.report._html import _layers


@pytest.fixture(autouse=True)
def _quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.ERROR)


def test_points_are_classified_by_the_study_rules(tmp_path: Path) -> None:
    study, url = make_study(tmp_path)
    d = report_data(study, storage=url)
    cats = {p.number: p.category for p in d.points}
    assert cats[0] == FEASIBLE and cats[3] == FEASIBLE
    assert cats[1] == BELOW_FLOOR  # the app's balanced profile at n_ctx 2048
    assert cats[16] == OVER_BUDGET  # 7000 MB + margin > 6144
    assert cats[17] == PRUNED
    pruned = next(p for p in d.points if p.number == 17)
    assert pruned.tok_s == pytest.approx(8.0) and pruned.latency_ms == pytest.approx(1500.0)
    assert d.unplotted == {"oom": 1, "over_budget_predicted": 1}
    assert [f.number for f in d.failures] == [18, 19]
    assert d.failures[1].phase == "load" and "out of memory" in d.failures[1].stderr_tail
    assert d.pareto == [3] and d.chosen == 3
    assert len(d.points) + sum(d.unplotted.values()) + d.reused == len(study.trials)


def test_before_after_uses_confirmed_and_side_by_side_figures(tmp_path: Path) -> None:
    study, url = make_study(tmp_path)
    d = report_data(study, storage=url)
    app = [r for r in d.before_after if r.side == "app"]
    assert [r.name for r in app] == [
        "performance",
        "balanced",
        "cpu_fallback",
        "performance (side by side)",
    ]
    assert app[-1].tok_s == 49.0 and app[-1].source == "confirmation session 1"
    tiers = [r for r in d.before_after if r.side == "tuned"]
    default = next(r for r in tiers if r.name.endswith("(default)"))
    assert default.trial == 3 and default.source == "confirmed" and default.tok_s == 58.0
    assert all(r.need_mb is None or r.need_mb <= BUDGET for r in tiers)
    assert "before_after" not in d.missing


def test_history_importances_vram_and_bandwidth(tmp_path: Path) -> None:
    study, url = make_study(tmp_path)
    d = report_data(study, storage=url)
    assert [h.best_so_far for h in d.history][:4] == [50.0, 50.0, 50.0, 60.0]
    assert d.history[1].feasible is False  # below the floor
    assert set(d.importances.values) == {"n_gpu_layers", "n_ctx", "n_threads", "flash_attn"}
    assert sum(d.importances.values.values()) == pytest.approx(1.0)
    assert len(d.vram_pairs) == 16
    b = d.bandwidth  # confirmed 58 tok/s x 4 GB per token over 400 GB/s
    assert b.trial == 3 and b.share == pytest.approx(0.58) and b.weight_source == "model file size"


def test_too_few_trials_and_a_cpu_study_say_what_is_missing(tmp_path: Path) -> None:
    study, url = make_study(tmp_path, gpu=False, sampled=2)
    d = report_data(study, storage=url)
    assert d.importances.values == {} and "needs 10" in d.importances.note
    assert d.bandwidth.share is None and d.bandwidth.note.startswith("n/a: a CPU study")
    assert any("importances" in m for m in d.missing["importance"])
    assert "vram" in d.missing and "layers" in d.missing


def test_a_cpu_study_has_no_empty_layers_chart(tmp_path: Path) -> None:
    url = recorded_copy("cpu-demo-3.db", tmp_path)
    (name,) = optuna.get_all_study_names(url)
    d = report_data(optuna.load_study(study_name=name, storage=url), storage=url)
    assert {p.n_gpu_layers for p in d.points} == {0} and "layers" in d.missing
    layers = _layers(d)  # every point at 0 layers, none with VRAM: a line saying why
    assert "Plotly" not in layers and "not in this study: measured VRAM" in layers


def test_a_gpu_study_keeps_its_layers_chart(tmp_path: Path) -> None:
    study, url = make_study(tmp_path)
    assert "Plotly" in _layers(report_data(study, storage=url))


def test_trial_rows_one_per_trial_and_confirmation(tmp_path: Path) -> None:
    study, _ = make_study(tmp_path)
    rows = trial_rows(study)
    assert len(rows) == len(study.trials) + 2
    assert [r.role for r in rows[:5]] == ["baseline"] * 3 + ["start", "sampled"]
    conf = [r for r in rows if r.role == "confirmation"]
    assert [(r.number, r.session, r.tok_s) for r in conf] == [(3, 1, 58.0), (0, 1, 49.0)]
    assert rows[19].status == "oom" and rows[19].tok_s is None


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_databases(name: str, tmp_path: Path) -> None:
    url = recorded_copy(name, tmp_path)
    (study_name,) = optuna.get_all_study_names(url)
    study = optuna.load_study(study_name=study_name, storage=url)
    d = report_data(study, storage=url)
    trials = study.trials
    assert len(d.points) + sum(d.unplotted.values()) + d.reused == len(trials)
    assert len(d.points) == len(trial_points(trials))
    assert d.provenance[0] == ("study", study_name)
    if "context_floor" not in study.user_attrs:
        assert "the context floor (made before it)" in d.missing["before_after"]
    if not study.user_attrs["hardware"]["gpus"]:
        assert d.bandwidth.note == "n/a: a CPU study (no GPU offload)"
    rows = trial_rows(study)
    extra = len(study.user_attrs.get("confirmed", {})) + len(
        study.user_attrs.get("reference_runs", {})
    )
    assert len(rows) == len(trials) + extra


def test_a_recorded_gpu_study_at_full_offload_has_a_bandwidth_share(tmp_path: Path) -> None:
    url = recorded_copy("gpu/run5-pressure/7b-free.db", tmp_path)
    study = optuna.load_study(study_name="7b-free", storage=url)
    d = report_data(study, storage=url)
    assert d.chosen == 3 and d.bandwidth.share == pytest.approx(
        317.5 * 4155212416 / 4814.304e9, rel=1e-3
    )
    assert d.unplotted == {"over_budget_predicted": 2}
