"""llama.cpp's own buffer sizes, read from its log: the ground truth for where memory went.

llama.cpp prints one line per allocated buffer, e.g.

    load_tensors:        CUDA0 model buffer size =  3850.02 MiB
    llama_kv_cache:      CUDA0 KV buffer size =   512.00 MiB
    sched_reserve:      CUDA0 compute buffer size =   300.50 MiB
    llama_context:  CUDA_Host  output buffer size =     0.12 MiB

Older builds wrote `llm_load_tensors: CUDA0 buffer size = ...` for the weights. These numbers
are exact and, unlike NVML's per-process reading, work under Windows' WDDM driver too.
"""

from __future__ import annotations

import re

Buffers = dict[str, dict[str, float]]

_LINE = re.compile(
    r"(?P<dev>[A-Za-z][\w.:\[\]-]*)\s+(?:(?P<kind>model|KV|compute|output|RS)\s+)?"
    r"buffer size\s*=\s*(?P<mib>[0-9]+(?:\.[0-9]+)?)\s*MiB"
)
_KINDS = {"model": "model", "KV": "kv", "compute": "compute", "output": "output", "RS": "rs"}
# Weights and caches can come as several buffers per device (split files, SWA + full KV):
# they add up. Compute and output buffers are re-reserved in place: the last line wins.
_SUMMED = {"model", "kv", "rs"}
_GPU = re.compile(r"^(CUDA|ROCm|HIP|Vulkan|Metal|MTL|SYCL|OpenCL|CANN|MUSA)\d*(_Mapped)?$")


def parse_buffers(log_text: str) -> Buffers:
    """{device: {kind: MiB}} for one model load; kinds: model, kv, compute, output, rs."""
    out: Buffers = {}
    for line in log_text.splitlines():
        m = _LINE.search(line)
        if m is None:
            continue
        kind = _KINDS[m.group("kind")] if m.group("kind") else None
        if kind is None:
            if "load_tensors" not in line:  # only the weights once had no kind word
                continue
            kind = "model"
        dev = m.group("dev")
        mib = float(m.group("mib"))
        per_dev = out.setdefault(dev, {})
        per_dev[kind] = per_dev.get(kind, 0.0) + mib if kind in _SUMMED else mib
    return out


def is_gpu_device(name: str) -> bool:
    """True for accelerator memory (CUDA0, Vulkan1, Metal...); pinned host buffers are RAM."""
    return _GPU.match(name) is not None


def gpu_total_mb(buffers: Buffers) -> float:
    """All llama.cpp buffers that live in GPU memory (not CPU, CPU_Mapped or CUDA_Host)."""
    return sum(sum(kinds.values()) for dev, kinds in buffers.items() if is_gpu_device(dev))
