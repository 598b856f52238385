"""NVIDIA GPU readings through NVML (nvidia-ml-py); every reading degrades to "unknown"."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _nvml() -> Any | None:
    """The initialised pynvml module, or None when there is no NVIDIA driver / GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
        if pynvml.nvmlDeviceGetCount() < 1:
            return None
        return pynvml
    except Exception:
        return None


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_mb: float
    free_mb: float
    used_mb: float
    driver: str
    bandwidth_gb_s: float | None


def _bandwidth(nv: Any, h: Any) -> float | None:
    """Theoretical memory bandwidth from the max memory clock and bus width (DDR: x2)."""
    try:
        clock_mhz = nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)
        bus_bits = nv.nvmlDeviceGetMemoryBusWidth(h)
        return float(clock_mhz) * 1e6 * 2 * float(bus_bits) / 8 / 1e9
    except Exception:
        return None


def list_gpus() -> list[GpuInfo]:
    nv = _nvml()
    if nv is None:
        return []
    driver = nv.nvmlSystemGetDriverVersion()
    driver = driver.decode() if isinstance(driver, bytes) else str(driver)
    out = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        name = nv.nvmlDeviceGetName(h)
        mem = nv.nvmlDeviceGetMemoryInfo(h)
        out.append(
            GpuInfo(
                index=i,
                name=name.decode() if isinstance(name, bytes) else str(name),
                total_mb=mem.total / 2**20,
                free_mb=mem.free / 2**20,
                used_mb=mem.used / 2**20,
                driver=driver,
                bandwidth_gb_s=_bandwidth(nv, h),
            )
        )
    return out


def _used_by(nv: Any, handles: list[Any], pids: set[int]) -> float | None:
    """MB that `pids` hold over `handles`: 0.0 when none, None where the driver can't say per
    process (Windows WDDM) - unknown, never a made-up 0."""
    try:
        total = 0.0
        for h in handles:
            for p in nv.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid in pids:
                    if p.usedGpuMemory is None:
                        return None
                    total += p.usedGpuMemory / 2**20
        return total
    except Exception:
        return None


@dataclass(frozen=True)
class GpuProcess:
    """A process NVML lists on a GPU: `kinds` "compute" (CUDA) and/or "graphics" (3D, e.g. the
    app's avatar, the desktop compositor)."""

    pid: int
    kinds: tuple[str, ...]
    used_mb: float | None  # None where the driver can't say per process (Windows WDDM)


def _merge(nv: Any, h: Any) -> list[GpuProcess]:
    """Compute and graphics lists of one GPU, one entry per pid (NVML reports a process's
    memory on the device in each list it is in: the larger figure, not the sum)."""
    seen: dict[int, GpuProcess] = {}
    for kind, lister in (
        ("compute", nv.nvmlDeviceGetComputeRunningProcesses),
        ("graphics", nv.nvmlDeviceGetGraphicsRunningProcesses),
    ):
        for p in lister(h):
            mb = None if p.usedGpuMemory is None else p.usedGpuMemory / 2**20
            old = seen.get(p.pid)
            if old is not None:
                known = [v for v in (mb, old.used_mb) if v is not None]
                seen[p.pid] = GpuProcess(p.pid, (*old.kinds, kind), max(known, default=None))
            else:
                seen[p.pid] = GpuProcess(p.pid, (kind,), mb)
    return sorted(seen.values(), key=lambda p: -(p.used_mb or 0.0))


def gpu_processes() -> dict[int, list[GpuProcess] | None]:
    """The processes holding memory on each GPU now, by GPU index; None for a GPU whose lists
    NVML can't give. Empty without an NVIDIA GPU."""
    nv = _nvml()
    if nv is None:
        return {}
    out: dict[int, list[GpuProcess] | None] = {}
    for i in range(nv.nvmlDeviceGetCount()):
        try:
            out[i] = _merge(nv, nv.nvmlDeviceGetHandleByIndex(i))
        except Exception:
            out[i] = None
    return out


def process_vram_mb(pid: int) -> float | None:
    """VRAM one process holds right now, over all NVIDIA GPUs; None without one (soak checkpoints:
    NVML is a driver query, asking costs the measured process nothing)."""
    nv = _nvml()
    if nv is None:
        return None
    handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
    return _used_by(nv, handles, {pid})


@dataclass(frozen=True)
class GpuReading:
    """Peak VRAM of a process tree and GPU telemetry over a trial.

    `device_used_mb` / `device_total_mb`: the GPU that came closest to full during the trial,
    its peak used memory (every process's, as NVML reads the device; WDDM gives it too) and its
    size. A card near full while the trial is slow is how a spill into system memory shows
    (tuner/study/_spill.py), where the driver can spill at all: `sysmem_fallback` (Windows;
    on Linux an allocation that does not fit fails instead, so a full card there says nothing)."""

    vram_mb: float | None
    vram_source: str | None  # "process" (NVML per-process) or "device-delta" (e.g. Windows WDDM)
    util_mean: float | None = None
    util_max: float | None = None
    temp_mean: float | None = None
    temp_max: float | None = None
    power_w_mean: float | None = None
    power_w_max: float | None = None
    device_used_mb: float | None = None
    device_total_mb: float | None = None
    sysmem_fallback: bool | None = None  # None: no reading, so nothing to say


def sysmem_fallback_possible(platform: str | None = None) -> bool:
    """Whether NVIDIA's driver on `platform` may place in system memory what does not fit on
    the card instead of failing the allocation: its Windows driver (536.40 and later, "CUDA -
    Sysmem Fallback Policy", on by default); the Linux driver never does. `platform`:
    sys.platform's value (this machine's by default)."""
    return (platform or sys.platform) == "win32"


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


class GpuSampler:
    """Samples NVML in a thread while a trial child runs (the child never touches NVML)."""

    def __init__(self, interval_s: float = 0.05) -> None:
        self._nv = _nvml()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pids: set[int] = set()
        self._proc_peak: float | None = None
        self._dev_base: float = 0.0
        self._dev_peak: float = 0.0
        self._dev_totals: list[float] = []  # per GPU
        self._dev_peaks: list[float] = []  # per GPU, device-level used memory
        self._util: list[float] = []
        self._temp: list[float] = []
        self._power: list[float] = []
        self._handles: list[Any] = []
        self._active = threading.Event()

    def start(self, pid: int) -> None:
        if self._nv is None:
            return
        nv = self._nv
        self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(nv.nvmlDeviceGetCount())]
        self._dev_totals = [nv.nvmlDeviceGetMemoryInfo(h).total / 2**20 for h in self._handles]
        self._dev_peaks = self._device_used_each()
        self._dev_base = sum(self._dev_peaks)
        self._dev_peak = self._dev_base
        self._pids = {pid}
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
        self._thread.start()

    def peak_mb(self) -> float | None:
        """Peak VRAM of the child so far (per process, else the device delta)."""
        if self._nv is None:
            return None
        if self._proc_peak:
            return self._proc_peak
        return max(0.0, self._dev_peak - self._dev_base)

    def mark_generation(self, active: bool) -> None:
        """Telemetry (util/temp/power) is averaged only while set; VRAM is tracked throughout."""
        if active:
            self._active.set()
        else:
            self._active.clear()

    def _device_used_each(self) -> list[float]:
        assert self._nv is not None
        return [float(self._nv.nvmlDeviceGetMemoryInfo(h).used) / 2**20 for h in self._handles]

    def _process_used(self) -> float | None:
        """VRAM used by the child's process tree, None where NVML can't say (WDDM)."""
        assert self._nv is not None
        import psutil

        pids = set(self._pids)
        try:
            pids |= {c.pid for c in psutil.Process(next(iter(self._pids))).children(True)}
        except psutil.Error:
            pass
        return _used_by(self._nv, self._handles, pids)

    def _sample(self) -> None:
        assert self._nv is not None
        nv = self._nv
        proc = self._process_used()
        if proc is not None:
            self._proc_peak = max(self._proc_peak or 0.0, proc)
        each = self._device_used_each()
        self._dev_peak = max(self._dev_peak, sum(each))
        self._dev_peaks = [max(a, b) for a, b in zip(self._dev_peaks, each, strict=True)]
        h = self._handles[0]
        readers: list[tuple[Callable[[], Any], list[float], float]] = [
            (lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu, self._util, 1.0),
            (lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU), self._temp, 1.0),
            (lambda: nv.nvmlDeviceGetPowerUsage(h), self._power, 1e-3),
        ]
        for fn, store, scale in readers:
            try:
                value = float(fn()) * scale
            except Exception:
                continue
            if self._active.is_set():
                store.append(value)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sample()
            except Exception:
                pass
            self._stop.wait(self._interval)

    def stop(self) -> GpuReading:
        if self._nv is None:
            return GpuReading(None, None)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._proc_peak is not None and self._proc_peak > 0:
            vram, source = self._proc_peak, "process"
        else:
            vram, source = max(0.0, self._dev_peak - self._dev_base), "device-delta"
        used, total = self._fullest()
        return GpuReading(
            vram_mb=vram,
            vram_source=source,
            util_mean=_mean(self._util),
            util_max=max(self._util, default=None),
            temp_mean=_mean(self._temp),
            temp_max=max(self._temp, default=None),
            power_w_mean=_mean(self._power),
            power_w_max=max(self._power, default=None),
            device_used_mb=used,
            device_total_mb=total,
            sysmem_fallback=sysmem_fallback_possible(),
        )

    def _fullest(self) -> tuple[float | None, float | None]:
        """Peak used and total memory of the GPU whose peak came closest to its total."""
        pairs = [(u, t) for u, t in zip(self._dev_peaks, self._dev_totals, strict=True) if t > 0]
        if not pairs:
            return None, None
        return max(pairs, key=lambda p: p[0] / p[1])
