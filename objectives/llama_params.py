"""Settings as dm-tune names them -> keyword arguments for llama_cpp.Llama(...)."""

from __future__ import annotations

from typing import Any

# ggml_type values llama.cpp accepts for the KV cache (type_k / type_v).
KV_TYPES = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "bf16": 30}


def to_llama_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """KV cache type names become ggml_type ints; everything else passes through."""
    out = dict(params)
    for key in ("type_k", "type_v"):
        if isinstance(out.get(key), str):
            out[key] = KV_TYPES[out[key]]
    return out
