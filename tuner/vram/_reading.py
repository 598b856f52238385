"""Which VRAM figure a trial is judged by, and where it came from (`vram_source`).

NVML (objectives/nvml.py) reads the trial child's VRAM on an NVIDIA GPU: per process, or the
device's growth where the driver has no per-process figure (Windows WDDM). A build that offloads
to a GPU NVML can't read (no NVIDIA driver: Metal, Vulkan, ROCm) gets no NVML reading, and the
study used to count such a trial as within the budget. There, llama.cpp's own device buffers
(weights, KV cache, compute: objectives/llama_buffers.py) are the reading; they miss the
driver's own context, so the budget needs a margin. A device growth smaller than those buffers
can't be the child's (another GPU, or a baseline read late): the buffers are taken then too.
A build that offloads with neither reading is recorded as `none` and is over the budget
(tuner/vram/_need.py). A CPU-only build is unchanged: what NVML read, if anything.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from objectives.launch import ChildResult
from objectives.llama_buffers import Buffers, gpu_total_mb, is_gpu_device, parse_buffers
from objectives.metrics import LLAMA_BUFFERS, NO_READING

UNMEASURED_ATTR = "vram_unmeasured"  # the trial's user attribute saying why it is over budget


class VramReading(NamedTuple):
    mb: float | None
    source: str | None  # objectives.metrics.VramSource; None on a CPU-only build without NVML


def llama_buffers_mb(buffers: Buffers, n_gpu_layers: int) -> float | None:
    """What llama.cpp's log says the model put in VRAM; None when it doesn't say: no buffer
    line at all, or layers were offloaded but no device buffer was logged (a cut log)."""
    if any(is_gpu_device(dev) for dev in buffers) or (buffers and n_gpu_layers == 0):
        return gpu_total_mb(buffers)
    return None


def vram_reading(
    *,
    offload: bool,
    n_gpu_layers: int,
    nvml_mb: float | None,
    nvml_source: str | None,
    buffers: Buffers,
) -> VramReading:
    """The rule (module docstring): the VRAM figure of one measurement and its source."""
    if not offload:
        return VramReading(nvml_mb, nvml_source)
    llama_mb = llama_buffers_mb(buffers, n_gpu_layers)
    if nvml_mb is not None and (
        nvml_source == "process" or llama_mb is None or nvml_mb >= llama_mb
    ):
        return VramReading(nvml_mb, nvml_source)
    if llama_mb is not None:
        return VramReading(llama_mb, LLAMA_BUFFERS)
    return VramReading(None, NO_READING)


def with_vram_reading(
    res: ChildResult, *, offload: bool, n_gpu_layers: int, buffers: Buffers | None = None
) -> ChildResult:
    """`res` with its metrics' `vram_mb` / `vram_source` set by the rule (as it is without
    metrics); `buffers` parsed from the child's llama.cpp log unless the caller has them."""
    if res.metrics is None:
        return res
    if buffers is None:
        buffers = parse_buffers(str(res.payload.get("llama_log", "")))
    mb, source = vram_reading(
        offload=offload,
        n_gpu_layers=n_gpu_layers,
        nvml_mb=res.metrics.vram_mb,
        nvml_source=res.metrics.vram_source,
        buffers=buffers,
    )
    return replace(res, metrics=replace(res.metrics, vram_mb=mb, vram_source=source))


def unmeasured_reason() -> str:
    return (
        "no VRAM reading: NVML can't read this GPU and llama.cpp's log gave no device buffer "
        "sizes; counted as over the VRAM budget"
    )


def reading_note(offload: bool, nvml_reads: bool) -> str | None:
    """The line a run prints once at its start when the study reads llama.cpp's buffers."""
    if not offload or nvml_reads:
        return None
    return (
        "note: NVML can't read the GPU this llama-cpp-python build offloads to (no NVIDIA "
        "driver: Metal, Vulkan, ROCm...), so each trial's VRAM is llama.cpp's own buffer sizes "
        "(weights, KV cache, compute); they leave out the driver's own context, so keep a "
        "margin in --vram-budget; a trial without them counts as over the budget"
    )
