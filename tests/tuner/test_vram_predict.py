"""The VRAM predictor against llama.cpp's own buffer sizes from real loads of generated GGUFs.

On this CPU build the CPU buffers stand in for the GPU's: the weights, KV and compute formulas
are the same, only the device differs (placement is checked separately, from llama.cpp's rule).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tuner.bench.make_gguf import write_llama_gguf
from tuner.bench.measure_buffers import measure
from tuner.vram import (
    MIB,
    GGUFInfo,
    compute_bytes,
    gpu_layers,
    kv_bytes_per_layer,
    learn_overhead,
    op_offload_bytes,
    predict_min_vram,
    predict_vram,
    read_gguf,
    weights_split,
)

# Q8_0 keeps llama.cpp's CPU from repacking weights into a second buffer, so the model
# buffers it reports are the weights exactly once.
SHAPES: dict[str, dict[str, Any]] = {
    "narrow": dict(blocks=2, hidden=64, ffn=128, heads=2, kv_heads=1, quant="Q8_0"),
    "gqa": dict(blocks=4, hidden=512, ffn=1536, heads=8, kv_heads=2, quant="Q8_0"),
    "ffn_heavy": dict(blocks=2, hidden=128, ffn=32768, heads=2, kv_heads=1, quant="Q8_0"),
}
SETTINGS = [
    {"n_ctx": 512, "n_batch": 512, "n_ubatch": 512, "flash_attn": False},
    {"n_ctx": 1000, "n_batch": 256, "flash_attn": True},
    {"n_ctx": 4096, "n_batch": 512, "n_ubatch": 128, "flash_attn": False, "type_k": "q8_0"},
    {"n_ctx": 8192, "n_batch": 512, "n_ubatch": 512, "flash_attn": False},
    {"n_ctx": 8192, "n_batch": 512, "flash_attn": True, "type_k": "q8_0", "type_v": "q4_0"},
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, demo_model: Path) -> dict[str, GGUFInfo]:
    root = tmp_path_factory.mktemp("shapes")
    out = {"demo": read_gguf(demo_model)}
    for name, shape in SHAPES.items():
        path = write_llama_gguf(
            root / f"{name}.gguf", context_length=8192, tokenizer_from=demo_model, **shape
        )
        out[name] = read_gguf(path)
    return out


def _close(predicted: float, measured: float, rel: float = 0.05) -> bool:
    return abs(predicted - measured) <= rel * measured + 0.01  # llama.cpp prints 2 decimals


@pytest.mark.parametrize("name", ["demo", *SHAPES])
@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: "-".join(map(str, s.values())))
def test_prediction_matches_llama_cpp(
    models: dict[str, GGUFInfo], name: str, settings: dict[str, Any]
) -> None:
    info = models[name]
    cpu = measure(info.path, settings)["CPU"]
    kv = kv_bytes_per_layer(info, settings) * info.block_count / MIB
    assert _close(kv, cpu["kv"], rel=0.001), (kv, cpu)
    compute = compute_bytes(info, settings) / MIB
    assert _close(compute, cpu["compute"]), (compute, cpu)


@pytest.mark.parametrize("name", ["demo", *SHAPES])
def test_weights_match_llama_cpp(models: dict[str, GGUFInfo], name: str) -> None:
    info = models[name]
    buffers = measure(info.path, {"n_ctx": 512})
    measured = sum(kinds.get("model", 0.0) for kinds in buffers.values())
    gpu, cpu = weights_split(info, 0)
    assert gpu == 0
    assert _close(cpu / MIB, measured, rel=0.01)
    # Full offload moves everything but token_embd (tied models copy it to the output layer).
    full = predict_vram(info, {"n_gpu_layers": -1, "n_ctx": 512}, 0.0).weights_mb
    embd = next(t.n_bytes for t in info.tensors if t.name == "token_embd.weight") / MIB
    tied = not any(t.name == "output.weight" for t in info.tensors)
    assert full == pytest.approx(cpu / MIB - embd + (embd if tied else 0.0))


def test_layer_placement_follows_llama_cpp() -> None:
    # 32 blocks (0..31) + output layer 32, as for Mistral-7B. llama-cpp-python 0.3.36's llama.cpp
    # offloads the output layer first (i_gpu_start = n_layer + 1 - ngl), then the last blocks;
    # checked against CUDA0's buffers of H200 loads in test_vram_predict_placement.py.
    assert gpu_layers(32, 0) == set()
    assert gpu_layers(32, 1) == {32}  # the output layer alone
    assert gpu_layers(32, 25) == {32, *range(8, 32)}  # it and 24 blocks
    assert gpu_layers(32, 32) == set(range(1, 33))  # all but block 0
    assert gpu_layers(32, 33) == set(range(33))
    assert gpu_layers(32, 43) == gpu_layers(32, -1) == set(range(33))


def test_partial_offload_counts_only_offloaded_blocks(models: dict[str, GGUFInfo]) -> None:
    info = models["gqa"]  # 4 blocks
    s = {"n_ctx": 2048, "n_gpu_layers": 2}  # the output layer and block 3
    p = predict_vram(info, s, overhead_mb=300.0)
    assert p.kv_mb == pytest.approx(kv_bytes_per_layer(info, s) / MIB)
    assert "output.weight" in {t.name for t in info.tensors}
    on_gpu = sum(t.n_bytes for t in info.tensors if t.name.startswith(("blk.3.", "output")))
    assert p.weights_mb == pytest.approx(on_gpu / MIB)
    # the output phase is on the GPU too; block 0..2's attention products come with a copy of
    # one block's K and V (op offload)
    assert p.compute_mb == (compute_bytes(info, s) + kv_bytes_per_layer(info, s)) / MIB
    assert p.total_mb == pytest.approx(p.weights_mb + p.kv_mb + p.compute_mb + 300.0)
    assert predict_vram(info, {**s, "offload_kqv": False}, 0.0).kv_mb == 0.0


def test_nothing_offloaded_keeps_only_the_op_offload_buffer(models: dict[str, GGUFInfo]) -> None:
    # A GPU build runs a ubatch's matrix products on the GPU even with no layer there (checked
    # against CUDA0's buffers in test_vram_predict_op_offload.py); below 32 tokens it does not.
    info = models["demo"]
    p = predict_min_vram(info, [4096, 2048], overhead_mb=250.0)
    smallest = {"n_gpu_layers": 0, "n_ctx": 2048, "n_batch": 32}
    assert (p.weights_mb, p.kv_mb) == (0.0, 0.0)
    assert p.compute_mb == op_offload_bytes(info, smallest) / MIB > 0
    assert p.total_mb == p.compute_mb + 250.0
    q = predict_min_vram(info, [4096, 2048], overhead_mb=250.0, n_batch=16)
    assert (q.weights_mb, q.kv_mb, q.compute_mb, q.total_mb) == (0.0, 0.0, 0.0, 250.0)


def test_learn_overhead_is_a_robust_median() -> None:
    pairs = [(1000.0, 1300.0), (2000.0, 2310.0), (500.0, 790.0), (800.0, 5000.0)]
    assert learn_overhead(pairs) == pytest.approx(305.0)
    assert learn_overhead([]) == 0.0
    assert learn_overhead([(100.0, 50.0)]) == 0.0
