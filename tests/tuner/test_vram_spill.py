"""A spill into system memory (Windows sysmem fallback) is over the VRAM budget.

No NVIDIA GPU here, and no Windows driver to spill: every device reading is simulated (an RTX
4050 laptop, 6141 MiB), either as plain values or through a stand-in for NVML in the study's
own process. The study, its SQLite file, the trial children and the export are real.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState
from profile_data import MODEL
from stand_in_study import StandInSpace, stand_in_context

import objectives.nvml
from objectives.launch import ColdLauncher
from objectives.nvml import sysmem_fallback_possible
from tests.conftest import stand_in
from tuner.profile import load_profile
from tuner.profile.export import export_profile
from tuner.study import (
    CONSTRAINT_KEY,
    DIRECTIONS,
    LEGACY_CONSTRAINTS_ATTR,
    SPILL_ATTR,
    Progress,
    SpillPoint,
    candidates,
    choose_best,
    is_feasible,
    like_key,
    make_objective,
    mark_spills,
    pareto_front,
    render_summary,
    spill_reason,
    spilled_over_budget_mb,
    top_candidates,
)
from tuner.study._spill import spill_point
from tuner.vram import over_budget_mb

CARD_MB = 6141.0  # RTX 4050 laptop GPU
LIKE = like_key({"n_ctx": 4096})


def point(
    trial: int,
    ngl: int,
    tok_s: float,
    used: float | None = None,
    total: float | None = CARD_MB,
    like: tuple[Any, ...] = LIKE,
    fallback: bool = True,
) -> SpillPoint:
    """A trial on a Windows card (its driver may spill) unless `fallback` is False."""
    return SpillPoint(trial, ngl, like, tok_s, used, None if used is None else total, fallback)


# The rule on plain values.


def test_simulated_card_at_exactly_97_percent_is_full_just_below_is_not() -> None:
    fast = [point(0, 10, 40.0)]
    assert spill_reason(point(1, 20, 10.0, used=970.0, total=1000.0), fast) is not None
    assert spill_reason(point(1, 20, 10.0, used=969.99, total=1000.0), fast) is None


def test_simulated_exactly_half_the_tok_s_is_not_a_spill_below_half_is() -> None:
    full = CARD_MB * 0.99
    fast = [point(0, 10, 40.0)]
    assert spill_reason(point(1, 20, 20.0, used=full), fast) is None
    reason = spill_reason(point(1, 20, 19.9, used=full), fast)
    assert reason == (
        "suspected spill into system memory (sysmem fallback): device memory 6080 of 6141 MB, "
        "tok/s 19.9 < half of trial 0 (40.0 tok/s) with fewer GPU layers (10 vs 20)"
    )


def test_simulated_full_card_without_a_comparable_trial_is_not_marked() -> None:
    full = CARD_MB
    assert spill_reason(point(1, 20, 5.0, used=full), []) is None
    assert spill_reason(point(1, 20, 5.0, used=full), [point(1, 20, 5.0, used=full)]) is None
    other = [  # faster, but not comparable: another n_ctx, flash attention, a quantized KV cache
        point(0, 10, 40.0, like=like_key({"n_ctx": 2048})),
        point(2, 10, 40.0, like=like_key({"n_ctx": 4096, "flash_attn": True})),
        point(3, 10, 40.0, like=like_key({"n_ctx": 4096, "type_k": "q8_0"})),
    ]
    assert spill_reason(point(1, 20, 5.0, used=full), other) is None


def test_simulated_comparable_with_as_many_or_more_layers_is_not_a_reference() -> None:
    full = CARD_MB
    faster_more = [point(0, 31, 40.0), point(2, 20, 40.0)]
    assert spill_reason(point(1, 20, 5.0, used=full), faster_more) is None


def test_simulated_the_best_comparable_with_fewer_layers_is_the_reference() -> None:
    others = [point(0, 0, 8.0), point(2, 12, 30.0), point(3, 18, 22.0), point(4, 25, 60.0)]
    reason = spill_reason(point(1, 20, 12.0, used=CARD_MB), others)
    assert reason is not None and "trial 2 (30.0 tok/s)" in reason
    # defaults are spelled out or not: llama.cpp's defaults compare equal
    explicit = like_key({"n_ctx": 4096, "flash_attn": False, "type_k": "f16", "type_v": "f16"})
    assert explicit == LIKE


def test_simulated_no_device_reading_is_never_a_spill() -> None:
    assert spill_reason(point(1, 20, 1.0), [point(0, 0, 50.0)]) is None


def test_simulated_full_and_slow_on_a_driver_that_cannot_spill_is_not_a_spill() -> None:
    # Measured on the lent H200 held to a "6 GB card" (Linux, docs/benchmarks/fit.md): the
    # holders keep the device ~96 % full, so every loaded 13B trial read >= 97 %, and two slow
    # ones (2.7 tok/s at 12 layers vs 6.2 at 11) would have been marked as spills there.
    fast = [point(18, 11, 6.2, fallback=False)]
    slow = point(10, 12, 2.7, used=141817.0, total=143771.0, fallback=False)
    assert spill_reason(slow, fast) is None
    assert spill_reason(slow._replace(fallback=True), fast) is not None


def test_the_driver_can_spill_only_on_windows() -> None:
    assert sysmem_fallback_possible("win32")
    assert not sysmem_fallback_possible("linux") and not sysmem_fallback_possible("darwin")


def test_a_reading_recorded_before_the_fallback_flag_is_never_a_spill() -> None:
    old = {"vram_mb": 4400.0, "device_used_mb": 6080.0, "device_total_mb": CARD_MB}
    p = spill_point(1, {"n_gpu_layers": 20, "n_ctx": 4096}, 5.0, old)
    assert not p.fallback and spill_reason(p, [point(0, 10, 40.0)]) is None


def test_simulated_reading_that_is_not_a_measurement_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^trial 1: device memory 10.0 of 0.0 MB") as info:
        spill_reason(point(1, 20, 1.0, used=10.0, total=0.0), [])
    assert "\n" not in str(info.value)


def test_a_spill_is_over_any_budget_and_above_its_own_constraint() -> None:
    over = over_budget_mb(4400.0, 5000.0)  # feasible by its own peak: -344
    value = spilled_over_budget_mb(over, 4400.0, CARD_MB)
    assert value > 0 and value == over + (CARD_MB - 4400.0)  # ceil(6141 + 256) - ceil(4656)
    assert spilled_over_budget_mb(-9000.0, 6000.0, CARD_MB) == 1.0  # a budget above the card


# The study-level path: a real SQLite study, trials as a GPU run would store them.

BUDGET_MB = 5000.0


def _add(
    study: optuna.Study,
    tok_s: float,
    ttft_ms: float,
    ngl: int,
    *,
    peak: float | None,
    device_used: float | None,
    n_ctx: int = 4096,
) -> FrozenTrial:
    settings = {"n_gpu_layers": ngl, "n_ctx": n_ctx, "n_batch": 512, "n_threads": 6}
    samples = [{"gen_tok_s": tok_s, "ttft_ms": ttft_ms, "prompt_tok_s": 900.0}]
    metrics = {
        "gen_tok_s": tok_s,
        "ttft_ms": ttft_ms,
        "gen_tok_s_cv": 0.0,
        "ttft_ms_cv": 0.0,
        "samples": samples,
        "vram_mb": peak,
        "vram_source": "process" if peak is not None else None,
    }
    gpu: dict[str, Any] = {"vram_mb": peak}
    if device_used is not None:
        gpu.update(device_used_mb=device_used, device_total_mb=CARD_MB, sysmem_fallback=True)
    over = over_budget_mb(peak, BUDGET_MB)
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            values=[tok_s, ttft_ms],
            user_attrs={"llama_kwargs": settings, "metrics": metrics, "gpu": gpu, "status": "ok"},
            system_attrs={
                LEGACY_CONSTRAINTS_ATTR: [over, 0.0],
                f"constraints:{CONSTRAINT_KEY}": over,
                "constraints:n_ctx_below_floor": 0.0,
            },
        )
    )
    return study.get_trials(deepcopy=False)[-1]


def _gpu_study(tmp_path: Path) -> optuna.Study:
    """CPU only, then a full offload that filled the card and crawled (its peak alone is within
    the budget: the fallback placed the rest in system memory), then fewer layers, fast: this
    later trial reveals the earlier spill."""
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/dm-tune.db", study_name="spill", directions=DIRECTIONS
    )
    _add(study, 8.0, 4000.0, 0, peak=150.0, device_used=1350.0)
    _add(study, 11.0, 600.0, 31, peak=4400.0, device_used=6080.0)  # 99 % of the card
    _add(study, 30.0, 900.0, 20, peak=3000.0, device_used=4300.0)
    study.set_user_attr("model", MODEL)
    study.set_user_attr("settings", {"vram_budget_mb": BUDGET_MB, "latency": "cold"})
    study.set_user_attr(
        "hardware", {"gpus": [{"name": "NVIDIA GeForce RTX 4050 Laptop GPU", "driver": "560.94"}]}
    )
    study.set_user_attr("gpu_offload", True)
    return study


def test_simulated_spill_revealed_later_is_infeasible_and_never_chosen(tmp_path: Path) -> None:
    study = _gpu_study(tmp_path)
    trials = study.get_trials(deepcopy=False)
    assert is_feasible(trials[1])  # as stored: its peak fits the budget
    without_2 = choose_best([t for t in trials if t.number != 2], "latency")
    assert without_2 is not None and without_2.number == 1

    marked = mark_spills(trials)
    assert [SPILL_ATTR in t.user_attrs for t in marked] == [False, True, False]
    spill = marked[1]
    assert not is_feasible(spill)
    assert spill.constraints[CONSTRAINT_KEY] > 0  # Optuna 5's attribute ...
    assert spill.system_attrs[LEGACY_CONSTRAINTS_ATTR][0] > 0  # ... and the dashboard's list
    assert spill.system_attrs[LEGACY_CONSTRAINTS_ATTR][1] == 0.0  # the floor's is kept
    assert (
        "device memory 6080 of 6141 MB, tok/s 11.0 < half of trial 2"
        in spill.user_attrs[SPILL_ATTR]
    )
    assert study.get_trials()[1].user_attrs.get(SPILL_ATTR) is None  # storage untouched

    assert 1 not in [t.number for t in candidates(trials)]
    assert 1 not in [t.number for t in pareto_front(trials)]
    assert 1 not in [t.number for t in top_candidates(trials, "latency", 5)]
    for prefer in ("throughput", "latency", "balanced"):
        assert choose_best(trials, prefer).number != 1  # type: ignore[union-attr]

    summary = render_summary(trials, "latency")
    assert "#1 is over the VRAM budget: suspected spill into system memory" in summary

    lines: list[str] = []
    path = export_profile(
        study,
        prefer="latency",
        out_dir=tmp_path,
        storage=f"sqlite:///{tmp_path}/dm-tune.db",
        echo=lines.append,
    )
    profile = load_profile(path)
    used = {t.measured.trial for t in profile.tiers if t.measured is not None}
    assert 1 not in used and 2 in used
    assert profile.provenance.trials == sorted(used)


def test_simulated_spill_marked_when_it_completes_is_kept() -> None:
    """A trial the study marked when it completed (its stored constraint already violated)
    stays marked, with its stored reason, even without the trial it was compared with."""
    study = optuna.create_study(directions=DIRECTIONS)
    t = _add(study, 11.0, 600.0, 31, peak=4400.0, device_used=6080.0)
    stored = optuna.trial.create_trial(
        state=TrialState.COMPLETE,
        values=list(t.values),
        user_attrs={**t.user_attrs, SPILL_ATTR: "suspected spill ... trial 7 ..."},
        system_attrs={
            **t.system_attrs,
            f"constraints:{CONSTRAINT_KEY}": 1500.0,
            LEGACY_CONSTRAINTS_ATTR: [1500.0, 0.0],
        },
    )
    study.add_trial(stored)
    (_, again) = mark_spills(study.get_trials(deepcopy=False))
    assert again.user_attrs[SPILL_ATTR] == "suspected spill ... trial 7 ..."
    assert again.constraints[CONSTRAINT_KEY] == 1500.0 and not is_feasible(again)


# The study's own path: a trial is marked when it completes (tuner/study/_study.py), with real trial
# children (stand-ins that print canned metrics: 50 + n_threads tok/s) and simulated NVML.


class _SimulatedNvml:
    """The pynvml calls GpuSampler makes, for one RTX 4050 whose used memory the test sets."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self) -> None:
        self.used_mb = 1200.0

    def nvmlDeviceGetCount(self) -> int:  # pynvml's names
        return 1

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        total = int(CARD_MB * 2**20)
        used = int(self.used_mb * 2**20)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return []  # as under WDDM's device-level view: nothing per process

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)  # utilization, temperature, power: not simulated


def _context(tmp_path: Path) -> Any:
    return stand_in_context(tmp_path, BUDGET_MB, StandInSpace(31))


def test_simulated_spill_is_marked_when_its_trial_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = _SimulatedNvml()
    monkeypatch.setattr(objectives.nvml, "_nvml", lambda: nvml)
    monkeypatch.setattr(objectives.nvml, "sysmem_fallback_possible", lambda: True)  # Windows
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/dm-tune.db", study_name="spill", directions=DIRECTIONS
    )
    lines: list[str] = []
    progress = Progress(
        study,
        total=3,
        start_count=0,
        latency="cold",
        prefer="balanced",
        max_same_failures=3,
        echo=lines.append,
    )
    objective = make_objective(
        cast(Any, _context(tmp_path)), study, ColdLauncher(stand_in("canned"))
    )
    # 110 tok/s at 10 layers with room left; 51 tok/s at 20 layers on a full card; then 52
    # tok/s at 25 layers with room left (a trial that did not spill is not marked).
    runs = [(10, 60, 3000.0), (20, 1, CARD_MB * 0.98), (25, 2, 4000.0)]
    for ngl, threads, used in runs:
        nvml.used_mb = used
        study.enqueue_trial({"n_gpu_layers": ngl, "n_ctx": 4096, "n_threads": threads})
        study.optimize(objective, n_trials=1, callbacks=[progress])

    first, spill, last = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in (first, spill, last))
    assert spill.user_attrs["gpu"]["device_used_mb"] == pytest.approx(CARD_MB * 0.98, abs=1)
    assert spill.user_attrs["gpu"]["device_total_mb"] == pytest.approx(CARD_MB, abs=1)
    assert spill.user_attrs[SPILL_ATTR].startswith(
        "suspected spill into system memory (sysmem fallback): device memory 6018 of 6141 MB, "
        "tok/s 51.0 < half of trial 0 (110.0 tok/s)"
    )
    assert spill.constraints[CONSTRAINT_KEY] > 0 and not is_feasible(spill)
    assert spill.system_attrs[LEGACY_CONSTRAINTS_ATTR][0] == spill.constraints[CONSTRAINT_KEY]
    assert SPILL_ATTR not in first.user_attrs and is_feasible(first)
    assert SPILL_ATTR not in last.user_attrs and is_feasible(last)
    marked = [ln for ln in lines if "over the VRAM budget" in ln]
    assert marked == [f"  #1 is over the VRAM budget: {spill.user_attrs[SPILL_ATTR]}"]
