"""GPU truth on a real NVIDIA GPU with a CUDA build (marker `gpu`; skipped without a GPU).

Run on the lent GPU machine by scripts/gpu_run.sh; results in docs/benchmarks/gpu.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from objectives.launch import ColdLauncher, TrialSpec
from objectives.llama_buffers import gpu_total_mb, parse_buffers
from tuner.vram import predict_vram, read_gguf

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

WORKLOAD = {
    "prompt": "<|user|>\nBonjour Kira, tu vas bien ?</|user|>\n<|assistant|>\n",
    "next_prompt": None,
    "max_tokens": 16,
    "temperature": 0.7,
    "top_p": 0.9,
    "seed": 1,
    "warmup": True,
    "repeats": 2,
}


@pytest.fixture(scope="module")
def gpu_model(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """Small llama GGUF, random weights; tokenizer from DM_TUNE_TOKENIZER_GGUF (the GPU machine
    has no network) or the demo model."""
    from tuner.bench.make_gguf import write_llama_gguf

    tok = os.environ.get("DM_TUNE_TOKENIZER_GGUF")
    demo_model = Path(tok) if tok else request.getfixturevalue("demo_model")
    path = tmp_path_factory.mktemp("gguf") / "gpu-small.gguf"
    return write_llama_gguf(
        path,
        blocks=8,
        hidden=1024,
        ffn=2816,
        heads=16,
        kv_heads=4,
        context_length=4096,
        tokenizer_from=demo_model,
    )


def test_doctor_and_the_studys_probe_see_that_the_build_offloads(gpu_model: Path) -> None:
    """dm-tune's own checks on this CUDA build, not the library's flag alone: doctor raises no
    warning, and the probe a study starts with (a real trial child) reports the offload."""
    from tuner.machine import collect, run_probe

    report = collect(None)
    assert report["llama_cpp"]["ok"] and report["llama_cpp"]["gpu_offload"] is True
    assert report["hardware"]["gpus"] and report["warnings"] == [] and report["fix"] is None
    probe = run_probe(gpu_model, [WORKLOAD["prompt"]])
    assert probe.gpu_offload is True and probe.n_tokens[0] > 0


def _trial(model: Path, ngl: int, **extra: object) -> object:
    params = {"n_gpu_layers": ngl, "n_ctx": 1024, "n_batch": 256, "n_threads": 4, **extra}
    res = ColdLauncher().run(TrialSpec.of(model, params, WORKLOAD), 180)
    assert res.status == "ok", res.reason + res.stderr_tail
    return res


def test_full_offload_trial_reads_vram_two_ways_and_telemetry(gpu_model: Path) -> None:
    res = _trial(gpu_model, 99)
    m = res.metrics  # type: ignore[attr-defined]
    assert m.vram_source == "process" and m.vram_mb > 100
    buffers = parse_buffers(res.payload["llama_log"])  # type: ignore[attr-defined]
    assert "CUDA0" in buffers and buffers["CUDA0"]["model"] > 0 and buffers["CUDA0"]["kv"] > 0
    assert gpu_total_mb(buffers) < m.vram_mb  # NVML adds the CUDA context
    gpu = res.gpu  # type: ignore[attr-defined]
    assert gpu.power_w_max is not None and gpu.temp_max is not None


def test_prediction_tracks_measurement_once_overhead_is_learned(gpu_model: Path) -> None:
    info = read_gguf(gpu_model)
    base = _trial(gpu_model, 0)
    overhead = (
        base.metrics.vram_mb
        - predict_vram(  # type: ignore[attr-defined]
            info, {"n_gpu_layers": 0, "n_ctx": 1024, "n_batch": 256}, 0
        ).total_mb
    )
    full = _trial(gpu_model, 99, flash_attn=True)
    pred = predict_vram(
        info, {"n_gpu_layers": 99, "n_ctx": 1024, "n_batch": 256, "flash_attn": True}, overhead
    )
    measured = full.metrics.vram_mb  # type: ignore[attr-defined]
    assert abs(pred.total_mb - measured) / measured < 0.10


def test_a_prewarmed_spare_holds_no_gpu_memory(gpu_model: Path) -> None:
    """The pool's spare finds the GPU but creates no CUDA context: NVML shows no memory for its
    pid, so neither per-process nor device-level VRAM readings of a running trial include it."""
    import time

    from objectives.launch import CHILD_ARGV, PoolLauncher, WarmPool
    from objectives.nvml import process_vram_mb

    spec = TrialSpec.of(gpu_model, {"n_gpu_layers": 99}, WORKLOAD)
    with WarmPool(CHILD_ARGV) as pool:
        res = PoolLauncher(pool).run(spec, 180)
        spare = pool._spare
        assert spare is not None
        t0 = time.perf_counter()
        while not spare.is_ready():
            assert time.perf_counter() - t0 < 60
            time.sleep(0.05)
        assert res.status == "ok", res.reason + res.stderr_tail
        assert res.metrics is not None and (res.metrics.vram_mb or 0) > 0
        assert not process_vram_mb(spare.proc.pid)  # None or 0: no context
