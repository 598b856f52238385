"""The buffer parser on a CUDA log that dm-tune recorded on the H200 (tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectives.llama_buffers import gpu_total_mb, parse_buffers

LOG = Path(__file__).resolve().parent.parent / "data" / "llama_log_cuda_h200_dmtune.txt"


def test_h200_full_offload_log() -> None:
    b = parse_buffers(LOG.read_text(encoding="utf-8"))
    assert b["CUDA0"] == {"model": 3853.02, "kv": 512.0, "compute": 112.01}
    assert b["CUDA_Host"]["compute"] == 20.01
    assert b["CPU_Mapped"]["model"] == 108.0  # token_embd stays on the CPU
    # on the GPU: weights + KV + compute; host-pinned buffers are RAM
    assert gpu_total_mb(b) == pytest.approx(3853.02 + 512.0 + 112.01)
