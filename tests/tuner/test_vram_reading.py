"""Where NVML gives no VRAM reading, llama.cpp's own buffers are the reading; no reading at all
is over the budget (tuner/vram/_reading.py).

The llama-cpp-python build here can't offload and there is no GPU: a build that offloads is
simulated (the `gpu_offload` the probe would report), NVML is absent as on a Metal, Vulkan or
ROCm machine, and the buffers come from real llama.cpp logs recorded on CUDA machines
(tests/data). The study, its SQLite file and the trial children (stand-ins that print canned
metrics and the recorded log) are real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import optuna
import pytest
from profile_data import MODEL, PROVENANCE
from stand_in_study import StandInSpace, stand_in_context

import objectives.nvml
from objectives.launch import ColdLauncher
from objectives.llama_buffers import parse_buffers
from tests.conftest import stand_in
from tuner.profile import load_profile
from tuner.profile.build import build_profile, write_profile
from tuner.study import (
    CONSTRAINT_KEY,
    DIRECTIONS,
    LEGACY_CONSTRAINTS_ATTR,
    Progress,
    candidates,
    choose_best,
    is_feasible,
    make_objective,
)
from tuner.vram import (
    UNMEASURED_ATTR,
    VramReading,
    llama_buffers_mb,
    over_budget_mb,
    reading_note,
    vram_reading,
)

DATA = Path(__file__).resolve().parents[1] / "data"
BUDGET_MB = 10000.0
ONE_GPU = "llama_log_cuda_llamafile_552.txt"  # CUDA0: model 7317.71, KV 180, compute 105
TWO_GPUS = "llama_log_cuda_6122.txt"  # CUDA0 and CUDA1: 25215.92 MiB in all
HOST_ONLY = "llama_log_cuda_kobold_1609.txt"  # a cut log: CPU and CUDA_Host buffers only


def _buffers(name: str) -> dict[str, dict[str, float]]:
    return parse_buffers((DATA / name).read_text(encoding="utf-8"))


def _read(
    name: str | None,
    *,
    offload: bool = True,
    ngl: int = 31,
    nvml: float | None = None,
    source: str | None = None,
) -> VramReading:
    return vram_reading(
        offload=offload,
        n_gpu_layers=ngl,
        nvml_mb=nvml,
        nvml_source=source,
        buffers=_buffers(name) if name else {},
    )


# The rule on recorded logs.


def test_simulated_offload_without_nvml_reads_llama_cpp_device_buffers() -> None:
    mb, source = _read(ONE_GPU)
    assert source == "llama-buffers"
    assert mb == pytest.approx(7317.71 + 180.00 + 105.00)  # not CPU nor CUDA_Host
    mb, source = _read(TWO_GPUS)
    assert source == "llama-buffers"
    assert mb == pytest.approx(5434.38 + 1536 + 672.01 + 13989.53 + 3584)
    mb, source = _read("llama_log_cuda_h200_dmtune.txt")
    assert source == "llama-buffers"
    assert mb == pytest.approx(3853.02 + 512.0 + 112.01)


def test_simulated_offload_nvml_per_process_reading_is_kept() -> None:
    assert _read(ONE_GPU, nvml=8100.0, source="process") == (8100.0, "process")
    # per process it includes the driver's context: it wins even when below the buffers
    assert _read(ONE_GPU, nvml=7000.0, source="process") == (7000.0, "process")


def test_simulated_offload_device_growth_below_the_buffers_is_not_the_childs() -> None:
    """WDDM (no per-process figure): a device growth smaller than llama.cpp's own device
    buffers can't be the child's, the buffers are the reading; a larger one is kept."""
    mb, source = _read(ONE_GPU, nvml=0.0, source="device-delta")
    assert source == "llama-buffers" and mb == pytest.approx(7602.71)
    assert _read(ONE_GPU, nvml=7900.0, source="device-delta") == (7900.0, "device-delta")
    assert _read(None, nvml=0.0, source="device-delta") == (0.0, "device-delta")


def test_simulated_offload_with_no_reading_at_all_is_none() -> None:
    assert _read(None) == (None, "none")  # no log captured
    assert _read(HOST_ONLY) == (None, "none")  # layers offloaded, no device buffer logged
    # every layer on the CPU and a log that says so: nothing on the device
    assert _read("llama_log_cpu_demo.txt", ngl=0) == (0.0, "llama-buffers")
    assert llama_buffers_mb(_buffers(HOST_ONLY), 0) == 0.0


def test_a_cpu_only_build_keeps_what_nvml_read() -> None:
    assert _read(ONE_GPU, offload=False) == (None, None)
    assert _read(None, offload=False, nvml=12.0, source="process") == (12.0, "process")


def test_no_reading_on_an_offloading_build_is_over_the_budget() -> None:
    assert over_budget_mb(None, BUDGET_MB, "none") > 0
    assert over_budget_mb(None, BUDGET_MB) == -BUDGET_MB  # a CPU-only build: nothing in VRAM
    assert over_budget_mb(7602.71, BUDGET_MB, "llama-buffers") == 7859.0 - BUDGET_MB


def test_the_run_says_once_why_it_reads_llama_cpp_buffers() -> None:
    note = reading_note(True, nvml_reads=False)
    assert note is not None and "\n" not in note
    assert "llama.cpp's own buffer sizes" in note and "margin" in note
    assert reading_note(True, nvml_reads=True) is None
    assert reading_note(False, nvml_reads=False) is None


# The study's own path: trials written as a real run writes them.


def _context(tmp_path: Path, offload: bool) -> Any:
    return stand_in_context(tmp_path, BUDGET_MB, StandInSpace(41, batch=True), offload=offload)


def _run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    offload: bool,
    runs: list[tuple[int, str | None]],
) -> tuple[optuna.Study, list[str]]:
    """One trial per (n_threads, recorded log) with 31 GPU layers; the stand-in child prints
    50 + n_threads tok/s and the log."""
    monkeypatch.setattr(objectives.nvml, "_nvml", lambda: None)  # no NVIDIA driver
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path}/dm-tune.db", study_name="metal", directions=DIRECTIONS
    )
    lines: list[str] = []
    progress = Progress(
        study,
        total=len(runs),
        start_count=0,
        latency="cold",
        prefer="throughput",
        max_same_failures=3,
        echo=lines.append,
    )
    objective = make_objective(
        cast(Any, _context(tmp_path, offload)), study, ColdLauncher(stand_in("canned"))
    )
    for threads, log in runs:
        if log is None:
            monkeypatch.delenv("DM_TUNE_STAND_IN_LLAMA_LOG", raising=False)
        else:
            monkeypatch.setenv("DM_TUNE_STAND_IN_LLAMA_LOG", str(DATA / log))
        study.enqueue_trial(
            {"n_gpu_layers": 31, "n_ctx": 4096, "n_batch": 512, "n_threads": threads}
        )
        study.optimize(objective, n_trials=1, callbacks=[progress])
    return study, lines


def test_simulated_offload_study_judges_trials_by_llama_cpp_buffers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60 tok/s within the budget; 90 tok/s over it; 110 tok/s with no reading at all
    study, lines = _run(tmp_path, monkeypatch, True, [(10, ONE_GPU), (40, TWO_GPUS), (60, None)])
    fits, over, unmeasured = study.get_trials()  # as stored in the SQLite file

    assert fits.user_attrs["metrics"]["vram_source"] == "llama-buffers"
    assert fits.user_attrs["metrics"]["vram_mb"] == pytest.approx(7602.71)
    assert fits.user_attrs["llama_buffers"]["CUDA0"]["model"] == 7317.71
    assert "gpu" not in fits.user_attrs  # no NVML telemetry
    assert fits.constraints[CONSTRAINT_KEY] == 7859.0 - BUDGET_MB and is_feasible(fits)

    assert over.user_attrs["metrics"]["vram_source"] == "llama-buffers"
    assert over.constraints[CONSTRAINT_KEY] > 0 and not is_feasible(over)
    assert UNMEASURED_ATTR not in over.user_attrs

    assert unmeasured.user_attrs["metrics"]["vram_source"] == "none"
    assert unmeasured.user_attrs["metrics"]["vram_mb"] is None
    assert unmeasured.constraints[CONSTRAINT_KEY] > 0 and not is_feasible(unmeasured)
    assert unmeasured.system_attrs[LEGACY_CONSTRAINTS_ATTR][0] > 0  # the dashboard's list too
    assert "no VRAM reading" in unmeasured.user_attrs[UNMEASURED_ATTR]
    assert any("#2 is over the VRAM budget: no VRAM reading" in line for line in lines)

    trials = study.get_trials()
    assert [t.number for t in candidates(trials)] == [0]
    best = choose_best(trials, "throughput")
    assert best is not None and best.number == 0  # the slowest: the only one known to fit

    profile = build_profile(
        trials,
        model=MODEL,
        provenance=PROVENANCE,
        budget_mb=BUDGET_MB,
        prefer="throughput",
        gpu_present=True,
    )
    path = tmp_path / "profile.yaml"
    write_profile(path, profile)
    assert "vram_source: llama-buffers" in path.read_text(encoding="utf-8")
    tier = load_profile(path).tiers[0]
    assert tier.measured is not None and tier.measured.trial == 0
    assert tier.measured.vram_source == "llama-buffers"
    assert tier.min_vram_free_mb == 7859.0


def test_a_cpu_only_build_study_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No offload: VRAM is 0 by construction, whatever the log says; every trial fits."""
    study, lines = _run(tmp_path, monkeypatch, False, [(10, ONE_GPU), (20, None)])
    for t in study.get_trials():
        assert t.user_attrs["metrics"]["vram_mb"] is None
        assert t.user_attrs["metrics"]["vram_source"] is None
        assert t.constraints[CONSTRAINT_KEY] == -BUDGET_MB and is_feasible(t)
        assert UNMEASURED_ATTR not in t.user_attrs
    assert not any("over the VRAM budget" in line for line in lines)
