"""Predict a setting's VRAM before loading it, from the GGUF header alone.

Why: a trial that does not fit the budget costs a model load (or an out-of-memory crash) to
find out; the study skips settings predicted over budget, and `doctor` shows what fits.

The parts follow llama.cpp (src/llama-model.cpp `load_tensors`, llama-kv-cache.cpp):
- weights: layer il (blocks 0..n_layer-1, the output layer is il = n_layer) is on the GPU when
  i_gpu_start <= il < i_gpu_start + min(ngl, n_layer + 1), i_gpu_start = max(n_layer + 1 - ngl,
  0): the output layer goes first. So 1 <= ngl <= n_layer offloads the output layer and the last
  ngl - 1 blocks (ngl = 1: the output layer alone; ngl = n_layer: all but block 0); ngl >
  n_layer offloads everything. token_embd always stays on the CPU. A model without
  output.weight (tied embeddings) gets a copy of token_embd on the output layer's device.
  (Older llama.cpp started at n_layer - ngl, blocks first.) This is the rule of the llama.cpp in
  llama-cpp-python 0.3.36, checked against CUDA0's model and KV buffers of every partial-offload
  trial of three H200 studies: docs/benchmarks/gpu.md, tests/tuner/test_vram_predict_placement.py.
- KV cache: n_ctx rounded up to 256 cells, per offloaded block (only with offload_kqv):
  cells * (n_embd_k_gqa * bytes(type_k) + n_embd_v_gqa * bytes(type_v)).
- compute buffer: the peak of three phases of the graph reserved for one ubatch, calibrated on
  llama.cpp's own CPU "compute buffer size" (exact to ~1% on four shapes x 12 settings, see
  tests/test_vram_predict.py). The GPU buffer holds the same graph for its layers, so the same
  formula is used there: an estimate that the GPU runs check against CUDA0's reported size.
- compute buffer with no layer offloaded (`op_offload_bytes`): a GPU build still runs every
  matrix product of a ubatch of >= 32 tokens on the GPU (ggml-backend's op offload,
  `ggml_backend_cuda_device_offload_op`), and the rest of the graph follows it there. Each
  product whose weight is in RAM starts a split of its own, with a copy of that one weight in
  the GPU compute buffer, freed before the next. The largest is the output matrix: its copy,
  the ubatch's logits and its input, n_ubatch * 4 * (n_vocab + n_embd) bytes.
- compute buffer with some blocks in RAM and some on the GPU: the GPU graph's peak plus one
  block's K and V cache (`kv_bytes_per_layer`): the attention products of a RAM block are
  offloaded too, with copies of its cache views. Fitted on the CUDA0 compute buffers of the
  partial-offload trials under a real 6 GB card (docs/benchmarks/fit.md): 7B GQA and 13B
  (no GQA, 80 MiB of KV per block at 4096) shapes, n_ubatch 32..1024, flash attention on and off.
What is left (CUDA context, cuBLAS workspace, the CUDA pool that grows during the first
prompt) is `overhead_mb`, learned per machine with `learn_overhead`, apart for settings with
and without flash attention (`overhead_class`): without it the attention products go through
cuBLAS, whose handles and workspace cost ~120 MiB more on the H200 (725-770 vs 600-627 MiB).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from tuner.vram._gguf_info import GGUFInfo

MIB = 2**20
KV_PAD = 256
# Bytes per value of the KV cache types llama.cpp accepts (block size / values per block).
KV_TYPE_BYTES = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q4_0": 18 / 32,
    "q4_1": 20 / 32,
    "q5_0": 22 / 32,
    "q5_1": 24 / 32,
    "iq4_nl": 18 / 32,
}
_BLOCK = re.compile(r"^blk\.(\d+)\.")
# The CUDA backend takes an op whose weight is in RAM only from this batch size up (ggml-cuda.cu
# `get_op_batch_size(op) >= 32`, env GGML_OP_OFFLOAD_MIN_BATCH); dm-tune's smallest n_batch.
OP_OFFLOAD_MIN_BATCH = 32


@dataclass(frozen=True)
class VramPrediction:
    weights_mb: float
    kv_mb: float
    compute_mb: float
    overhead_mb: float
    total_mb: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in asdict(self).items()}


def gpu_layers(n_layer: int, n_gpu_layers: int) -> set[int]:
    """Layer ids on the GPU; n_layer is the output layer, offloaded first. Negative ngl: all."""
    ngl = n_layer + 1 if n_gpu_layers < 0 else n_gpu_layers
    start = max(n_layer + 1 - ngl, 0)
    active = min(ngl, n_layer + 1)
    return {il for il in range(n_layer + 1) if start <= il < start + active}


def _tensor_layer(name: str, n_layer: int) -> int | None:
    """The layer a tensor is loaded with; None for input tensors that stay on the CPU."""
    m = _BLOCK.match(name)
    if m:
        return int(m.group(1))
    if name.startswith("output"):
        return n_layer
    return None


def weights_split(info: GGUFInfo, n_gpu_layers: int) -> tuple[int, int]:
    """(bytes on the GPU, bytes in RAM) of the model's weights for this n_gpu_layers."""
    on_gpu = gpu_layers(info.block_count, n_gpu_layers)
    gpu = cpu = 0
    names = set()
    for t in info.tensors:
        names.add(t.name)
        layer = _tensor_layer(t.name, info.block_count)
        if layer is not None and layer in on_gpu:
            gpu += t.n_bytes
        else:
            cpu += t.n_bytes
    if "output.weight" not in names and info.block_count in on_gpu:
        gpu += sum(t.n_bytes for t in info.tensors if t.name == "token_embd.weight")
    return gpu, cpu


def _dims(info: GGUFInfo) -> tuple[int, int, int, int, int, int, int]:
    """n_embd, n_head, k and v width per token (all kv heads), n_ff, n_vocab, n_layer."""
    n_embd = info.embedding_length or 0
    n_head = info.head_count or 1
    n_head_kv = info.head_count_kv or n_head
    head_k = info.key_length or (n_embd // n_head if n_head else 0)
    head_v = info.value_length or head_k
    n_ff = info.feed_forward_length or 4 * n_embd
    return (
        n_embd,
        n_head,
        head_k * n_head_kv,
        head_v * n_head_kv,
        n_ff,
        info.vocab_size or 0,
        info.block_count,
    )


def _n_ctx(info: GGUFInfo, params: Mapping[str, Any]) -> int:
    n_ctx = int(params.get("n_ctx") or 0) or (info.context_length or 4096)
    return int(math.ceil(n_ctx / KV_PAD) * KV_PAD)


def _n_ubatch(params: Mapping[str, Any], n_ctx: int) -> int:
    n_batch = int(params.get("n_batch") or 512)
    n_ubatch = int(params.get("n_ubatch") or 512)
    return max(1, min(n_batch, n_ubatch, n_ctx))


def kv_bytes_per_layer(info: GGUFInfo, params: Mapping[str, Any]) -> float:
    """KV cache bytes of one block at this n_ctx and cache types."""
    _, _, k_gqa, v_gqa, *_ = _dims(info)
    tk = KV_TYPE_BYTES[str(params.get("type_k") or "f16")]
    tv = KV_TYPE_BYTES[str(params.get("type_v") or "f16")]
    return _n_ctx(info, params) * (k_gqa * tk + v_gqa * tv)


def compute_bytes(info: GGUFInfo, params: Mapping[str, Any], *, output: bool = True) -> float:
    """Peak of llama.cpp's graph for one ubatch: output logits, an FFN, or attention scores."""
    n_embd, n_head, k_gqa, _v_gqa, n_ff, n_vocab, _ = _dims(info)
    n_kv = _n_ctx(info, params)
    ub = _n_ubatch(params, n_kv)
    flash = bool(params.get("flash_attn", False))
    mask = ub * n_kv * (2 if flash else 4)
    ffn = ub * 4 * (3 * n_ff + 6 * n_embd) + mask
    phases = [ffn]
    if not flash:  # the KQ matrix exists only without flash attention
        phases.append(ub * 4 * (n_kv * n_head + n_kv + 5 * n_embd + 2 * k_gqa))
    if output:
        phases.append(ub * 4 * (n_vocab + 2 * n_embd))
    return float(max(phases))


def _matmul_weights(info: GGUFInfo) -> list[tuple[int, int, int]]:
    """(bytes, input width, output width) of every weight matrix a matrix product reads.

    token_embd is read by GET_ROWS, which is never offloaded, unless it is the output matrix too."""
    tied = not any(t.name == "output.weight" for t in info.tensors)
    return [
        (t.n_bytes, t.shape[0], t.shape[1])
        for t in info.tensors
        if len(t.shape) == 2 and (t.name != "token_embd.weight" or tied)
    ]


def _op_offload(params: Mapping[str, Any], info: GGUFInfo) -> bool:
    """Does the GPU run the products of RAM-resident weights for this ubatch size?"""
    ub = _n_ubatch(params, _n_ctx(info, params))
    return ub >= OP_OFFLOAD_MIN_BATCH and bool(params.get("op_offload", True))


def op_offload_bytes(info: GGUFInfo, params: Mapping[str, Any]) -> float:
    """GPU compute buffer for the matrix products llama.cpp offloads with no layer on the GPU.

    The peak split: one weight's copy, its ubatch input and output in f32 (the output matrix on
    dense models). 0 for a ubatch under OP_OFFLOAD_MIN_BATCH or with op_offload off."""
    ub = _n_ubatch(params, _n_ctx(info, params))
    if not _op_offload(params, info):
        return 0.0
    phases = [n_bytes + ub * 4 * (n_in + n_out) for n_bytes, n_in, n_out in _matmul_weights(info)]
    return float(max(phases, default=0))


def predict_vram(info: GGUFInfo, params: Mapping[str, Any], overhead_mb: float) -> VramPrediction:
    """VRAM of one setting (normalized dm-tune settings dict) on the first GPU, in MiB."""
    ngl = int(params.get("n_gpu_layers", 0))
    on_gpu = gpu_layers(info.block_count, ngl)
    gpu_w, _ = weights_split(info, ngl)
    blocks_on_gpu = len(on_gpu - {info.block_count})
    kv = 0.0
    if params.get("offload_kqv", True):
        kv = blocks_on_gpu * kv_bytes_per_layer(info, params)
    compute = 0.0
    if on_gpu:
        compute = compute_bytes(info, params, output=info.block_count in on_gpu)
        if blocks_on_gpu < info.block_count and _op_offload(params, info):
            compute += kv_bytes_per_layer(info, params)  # a RAM block's K and V, copied over
    elif offloaded := op_offload_bytes(info, params):  # the graph follows the products there
        compute = max(compute_bytes(info, params), offloaded)
    weights_mb, kv_mb, compute_mb = gpu_w / MIB, kv / MIB, compute / MIB
    return VramPrediction(
        weights_mb=weights_mb,
        kv_mb=kv_mb,
        compute_mb=compute_mb,
        overhead_mb=overhead_mb,
        total_mb=weights_mb + kv_mb + compute_mb + overhead_mb,
    )


def predict_min_vram(
    info: GGUFInfo,
    n_ctx_choices: Iterable[int],
    overhead_mb: float,
    n_batch: int = OP_OFFLOAD_MIN_BATCH,
) -> VramPrediction:
    """The least VRAM any setting needs (nothing offloaded, smallest context and batch): budget
    check. A GPU build keeps a compute buffer even then, unless n_batch < OP_OFFLOAD_MIN_BATCH."""
    choices = [int(c) for c in n_ctx_choices]
    n_ctx = min(choices) if choices else 512
    params = {"n_gpu_layers": 0, "n_ctx": n_ctx, "n_batch": n_batch}
    return predict_vram(info, params, overhead_mb)


def overhead_class(params: Mapping[str, Any]) -> str:
    """Settings whose unpredicted VRAM (`overhead_mb`) is alike: with or without flash attention."""
    return "flash_attn" if params.get("flash_attn") else "no_flash_attn"


def learn_overhead(pairs: Iterable[tuple[float, float]]) -> float:
    """Median of measured - predicted(without overhead) over finished trials, never below 0.

    The median ignores the odd trial whose reading caught another process on the GPU."""
    gaps = [measured - predicted for predicted, measured in pairs]
    return max(0.0, statistics.median(gaps)) if gaps else 0.0
