"""Which layers n_gpu_layers puts on the GPU, against llama.cpp's CUDA0 buffers of real loads.

No GPU here: the numbers are recorded ones, the `llama_buffers` (llama.cpp's own CUDA0 model and
KV buffer sizes) of every partial-offload trial (1 <= n_gpu_layers <= 32) of the three H200
studies of docs/benchmarks/gpu.md, llama-cpp-python 0.3.36 built with CUDA, on make_gguf's
`--shape mistral-7b` Q4_0 file (32 blocks of 117.03 MiB, output layer 108.02 MiB, 8 MiB of f16
KV per block per 2048 cells). These loads put the output layer on the GPU first
(i_gpu_start = n_layer + 1 - n_gpu_layers): n_gpu_layers k offloads it and k - 1 blocks.
"""

from __future__ import annotations

import pytest
from test_vram_predict_op_offload import MISTRAL, _info

from tuner.vram import MIB, GGUFInfo, gpu_layers, predict_vram, weights_split

RUN1 = "docs/benchmarks/data/gpu/gpu-h200.db"
RUN2 = "docs/benchmarks/data/gpu/run2-no-starts/gpu-h200.db"
RUN3 = "docs/benchmarks/data/gpu/run3/gpu-h200.db"

# (db, trial number, n_gpu_layers, n_ctx, CUDA0 model MiB, CUDA0 KV MiB, and what the predictor
# said then (blocks first, `vram_predicted`): weights MiB, KV MiB). The old rule counted one block
# too many: +9.01 MiB of weights (a block, 117.03, instead of the output layer, 108.02) and one
# block's KV; the new rule gives llama.cpp's sizes to the hundredth.
RECORDED = [
    (RUN1, 4, 14, 1024, 1629.42, 52.0, 1638.44, 56.0),
    (RUN1, 6, 3, 2048, 342.08, 16.0, 351.09, 24.0),
    (RUN1, 7, 4, 2048, 459.11, 24.0, 468.12, 32.0),
    (RUN1, 8, 24, 4096, 2799.73, 368.0, 2808.75, 384.0),
    (RUN1, 10, 21, 4096, 2448.64, 320.0, 2457.66, 336.0),
    (RUN1, 14, 25, 2048, 2916.77, 192.0, 2925.78, 200.0),
    (RUN1, 16, 25, 2048, 2916.77, 192.0, 2925.78, 200.0),
    (RUN1, 17, 19, 4096, 2214.58, 288.0, 2223.59, 304.0),
    (RUN1, 22, 25, 2048, 2916.77, 192.0, 2925.78, 200.0),
    (RUN1, 27, 18, 2048, 2097.55, 136.0, 2106.56, 144.0),
    (RUN2, 5, 5, 8192, 576.14, 128.0, 585.16, 160.0),
    (RUN2, 6, 9, 4096, 1044.27, 128.0, 1053.28, 144.0),
    (RUN2, 9, 14, 4096, 1629.42, 208.0, 1638.44, 224.0),
    (RUN2, 10, 25, 4096, 2916.77, 384.0, 2925.78, 400.0),
    (RUN2, 14, 16, 4096, 1863.48, 240.0, 1872.5, 256.0),
    (RUN2, 17, 26, 2048, 3033.8, 200.0, 3042.81, 208.0),
    (RUN2, 19, 21, 4096, 2448.64, 320.0, 2457.66, 336.0),
    (RUN2, 30, 26, 1024, 3033.8, 100.0, 3042.81, 104.0),
    (RUN2, 40, 23, 1024, 2682.7, 88.0, 2691.72, 92.0),
    (RUN2, 45, 27, 1024, 3150.83, 104.0, 3159.84, 108.0),
    (RUN2, 48, 22, 1024, 2565.67, 84.0, 2574.69, 88.0),
    (RUN3, 6, 5, 8192, 576.14, 128.0, 585.16, 160.0),
    (RUN3, 7, 9, 4096, 1044.27, 128.0, 1053.28, 144.0),
    (RUN3, 10, 25, 4096, 2916.77, 384.0, 2925.78, 400.0),
    (RUN3, 12, 19, 4096, 2214.58, 288.0, 2223.59, 304.0),
    (RUN3, 15, 25, 1024, 2916.77, 96.0, 2925.78, 100.0),
    (RUN3, 22, 28, 1024, 3267.86, 108.0, 3276.88, 112.0),
    (RUN3, 23, 26, 1024, 3033.8, 100.0, 3042.81, 104.0),
    (RUN3, 26, 19, 4096, 2214.58, 288.0, 2223.59, 304.0),
    (RUN3, 30, 23, 1024, 2682.7, 88.0, 2691.72, 92.0),
]


@pytest.fixture(scope="module")
def mistral() -> GGUFInfo:
    return _info(MISTRAL, "Q4_0")


@pytest.mark.parametrize(
    ("db", "trial", "ngl", "n_ctx", "model_mb", "kv_mb", "old_weights_mb", "old_kv_mb"),
    RECORDED,
    ids=[f"{db.split('/')[-2]}-t{trial}-ngl{ngl}" for db, trial, ngl, *_ in RECORDED],
)
def test_partial_offload_matches_cuda0_buffers(
    mistral: GGUFInfo,
    db: str,
    trial: int,
    ngl: int,
    n_ctx: int,
    model_mb: float,
    kv_mb: float,
    old_weights_mb: float,
    old_kv_mb: float,
) -> None:
    pred = predict_vram(mistral, {"n_gpu_layers": ngl, "n_ctx": n_ctx}, 0.0)
    assert pred.weights_mb == pytest.approx(model_mb, abs=0.01)
    assert pred.kv_mb == pytest.approx(kv_mb, abs=0.01)
    # What the blocks-first rule predicted then: one block more than the output layer.
    block_kv = kv_mb / (ngl - 1)
    assert old_weights_mb - pred.weights_mb == pytest.approx(117.03 - 108.02, abs=0.02)
    assert old_kv_mb - pred.kv_mb == pytest.approx(block_kv)


def test_output_layer_alone_at_one_gpu_layer(mistral: GGUFInfo) -> None:
    # The ngl-1 probe of docs/benchmarks/gpu.md ("Layer placement"): CUDA0 model 108.02 MiB,
    # output.weight + output_norm, and no block, so no KV on the GPU.
    assert weights_split(mistral, 1)[0] / MIB == pytest.approx(108.02, abs=0.01)
    assert predict_vram(mistral, {"n_gpu_layers": 1, "n_ctx": 4096}, 0.0).kv_mb == 0.0


def test_n_layer_gpu_layers_leaves_block_0_on_the_cpu(mistral: GGUFInfo) -> None:
    # Full offload is n_layer + 1 (trial 0 of each study: CUDA0 model 3853.02, KV 512 at 4096).
    assert gpu_layers(32, 32) == set(range(1, 33))
    full = predict_vram(mistral, {"n_gpu_layers": 33, "n_ctx": 4096}, 0.0)
    assert (round(full.weights_mb, 2), full.kv_mb) == (3853.02, 512.0)
    most = predict_vram(mistral, {"n_gpu_layers": 32, "n_ctx": 4096}, 0.0)
    assert most.weights_mb == pytest.approx(3853.02 - 117.03, abs=0.01)
    assert most.kv_mb == 512.0 * 31 / 32
