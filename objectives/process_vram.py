"""VRAM held by one process, read through NVML at a moment the process chooses.

The trial runner's GpuSampler gives the peak over a whole child; a soak needs the figure at
given messages (10, 50, 100), which only the child knows it has reached, so the child asks.
NVML is a driver query (no CUDA context is created), so asking costs the measured process nothing.
"""

from __future__ import annotations

from objectives.nvml import list_gpus


def process_vram_mb(pid: int) -> float | None:
    """MB used by `pid` over all NVIDIA GPUs: 0.0 when it holds none, None without an NVIDIA GPU
    or where the driver can't say per process (Windows WDDM): unknown, never a made-up 0."""
    if not list_gpus():
        return None
    try:
        import pynvml

        total = 0.0
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h):
                if p.pid == pid:
                    if p.usedGpuMemory is None:
                        return None
                    total += float(p.usedGpuMemory) / 2**20
        return total
    except Exception:
        return None
