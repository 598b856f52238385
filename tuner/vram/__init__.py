"""How much VRAM a setting needs: the GGUF header, the predictor, the guard that skips trials
predicted over budget, the need a tier asks for (measured peak + margin), and the reading of
what a trial used (NVML, or llama.cpp's own buffers)."""

from tuner.vram._gguf_info import GGUFInfo, TensorInfo, read_gguf
from tuner.vram._guard import VramGuard
from tuner.vram._need import VRAM_MARGIN_MB, free_vram_need_mb, over_budget_mb
from tuner.vram._predict import (
    MIB,
    OP_OFFLOAD_MIN_BATCH,
    VramPrediction,
    compute_bytes,
    gpu_layers,
    kv_bytes_per_layer,
    learn_overhead,
    op_offload_bytes,
    predict_min_vram,
    predict_vram,
    weights_split,
)
from tuner.vram._reading import (
    UNMEASURED_ATTR,
    VramReading,
    llama_buffers_mb,
    reading_note,
    unmeasured_reason,
    vram_reading,
    with_vram_reading,
)

__all__ = [
    "MIB",
    "OP_OFFLOAD_MIN_BATCH",
    "UNMEASURED_ATTR",
    "VRAM_MARGIN_MB",
    "GGUFInfo",
    "TensorInfo",
    "VramGuard",
    "VramPrediction",
    "VramReading",
    "compute_bytes",
    "free_vram_need_mb",
    "gpu_layers",
    "kv_bytes_per_layer",
    "learn_overhead",
    "llama_buffers_mb",
    "op_offload_bytes",
    "over_budget_mb",
    "predict_min_vram",
    "predict_vram",
    "read_gguf",
    "reading_note",
    "unmeasured_reason",
    "vram_reading",
    "weights_split",
    "with_vram_reading",
]
