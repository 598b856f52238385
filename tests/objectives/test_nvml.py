"""GpuSampler's device-level reading, through simulated NVML (no NVIDIA GPU here)."""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace
from typing import Any

import pytest

import objectives.nvml
from objectives.nvml import GpuSampler

MIB = 2**20


class _TwoGpus:
    """pynvml's calls for two GPUs whose used memory the test sets; nothing per process."""

    def __init__(self) -> None:
        self.total_mb = [8192.0, 6141.0]
        self.used_mb = [1000.0, 1200.0]

    def nvmlDeviceGetCount(self) -> int:  # pynvml's names
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
        return i

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        total, used = int(self.total_mb[h] * MIB), int(self.used_mb[h] * MIB)
        return SimpleNamespace(total=total, used=used, free=total - used)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return []

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)  # telemetry is not simulated


def test_simulated_nvml_reading_keeps_the_fullest_gpus_peak_and_total(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nv = _TwoGpus()
    monkeypatch.setattr(objectives.nvml, "_nvml", lambda: nv)
    sampler = GpuSampler(interval_s=60)  # samples taken here, not by the clock
    sampler.start(os.getpid())
    nv.used_mb = [7000.0, 6000.0]  # GPU 0 at 85 %, GPU 1 at 98 %: GPU 1 is the fullest
    sampler._sample()
    nv.used_mb = [2000.0, 1500.0]  # the peak is kept after the memory is freed
    sampler._sample()
    reading = sampler.stop()
    assert (reading.device_used_mb, reading.device_total_mb) == (6000.0, 6141.0)
    assert reading.sysmem_fallback == (sys.platform == "win32")  # the driver may spill there
    assert reading.vram_source == "device-delta"
    assert reading.vram_mb == 13000.0 - 2200.0  # the sum over both GPUs, as before


def test_without_nvml_there_is_no_device_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objectives.nvml, "_nvml", lambda: None)
    sampler = GpuSampler()
    sampler.start(os.getpid())
    reading = sampler.stop()
    assert reading.device_used_mb is None and reading.device_total_mb is None
