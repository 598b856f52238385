"""The parent side of a trial, against real child processes with canned behaviour."""

from __future__ import annotations

import io
import time
from pathlib import Path

import psutil
import pytest

from objectives import phases
from objectives.launch import ColdLauncher, TrialSpec, describe_exit
from objectives.launch._runner import _classify, gpu_was_full
from objectives.llama_log import LogCapture
from objectives.nvml import GpuReading
from tests.conftest import stand_in

SPEC = TrialSpec("unused", {"n_threads": 2}, {})


def test_canned_result_is_read_back() -> None:
    res = ColdLauncher(stand_in("canned")).run(SPEC, 60)
    assert res.status == "ok", res.reason
    assert res.metrics is not None
    assert res.metrics.gen_tok_s == 52.0
    assert res.metrics.vram_mb is None  # no GPU here: unknown, never a fake 0


def test_crash_is_recorded_with_signal_and_phase() -> None:
    res = ColdLauncher(stand_in("crash_always")).run(SPEC, 60)
    assert res.status == "crashed"
    assert "SIGSEGV" in res.reason
    assert res.phase == phases.SMOKE_DECODE
    assert "SIGSEGV" in describe_exit(res.returncode or 0)


def test_hang_times_out_and_the_whole_tree_is_ended(tmp_path: Path) -> None:
    spec = TrialSpec("unused", {"n_threads": 1}, {})
    t0 = time.perf_counter()
    res = ColdLauncher(stand_in("hang")).run(spec, 3)
    assert res.status == "timeout"
    assert "timed out after 3 s" in res.reason
    assert time.perf_counter() - t0 < 20
    # the grandchild the stand-in started must be gone too
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        assert "time.sleep(600)" not in cmd, "grandchild survived the timeout"


def test_out_of_memory_text_is_classified() -> None:
    res = ColdLauncher(stand_in("oom")).run(SPEC, 60)
    assert res.status == "oom"
    assert res.reason.startswith("out of memory")


def test_an_abort_after_llama_cpp_logged_out_of_memory_is_an_oom() -> None:
    """The log callback keeps llama.cpp's lines in memory; an abort in a decode loses them
    unless the OOM line was echoed to stderr as it came (the 13B run under pressure)."""
    res = ColdLauncher(stand_in("oom_abort")).run(SPEC, 60)
    assert res.status == "oom", res.reason
    assert "cudaMalloc failed: out of memory" in res.reason
    assert res.phase == phases.repeat(1)


def test_log_capture_echoes_only_out_of_memory_lines() -> None:
    out = io.StringIO()
    log = LogCapture(echo=out)
    log.feed("llama_context: n_ctx = 4096\nggml_gallocr: failed to ")
    assert out.getvalue() == ""
    log.feed("allocate CUDA0 buffer of size 387973120\nload_tensors: done\n")
    assert out.getvalue() == (
        "llama.cpp: ggml_gallocr: failed to allocate CUDA0 buffer of size 387973120\n"
    )
    assert len(log.lines) == 3


def test_a_crash_with_the_gpu_full_is_an_oom_and_without_it_a_crash() -> None:
    full = GpuReading(5538.0, "process", device_used_mb=143769.0, device_total_mb=143771.0)
    room = GpuReading(5538.0, "process", device_used_mb=140000.0, device_total_mb=143771.0)
    assert gpu_was_full(full) and not gpu_was_full(room)
    assert not gpu_was_full(GpuReading(None, None))  # no NVML: never guessed
    res = _classify(-6, False, 60, {}, "", full, 3.6)
    assert res.status == "oom"
    assert "SIGABRT" in res.reason and "143769 of 143771 MB" in res.reason
    assert _classify(-6, False, 60, {}, "", room, 3.6).status == "crashed"


def test_python_error_in_child_is_a_failure_with_its_message(tmp_path: Path) -> None:
    script = tmp_path / "boom.py"
    script.write_text("raise RuntimeError('model exploded')\n")
    res = ColdLauncher(["python", str(script)]).run(SPEC, 60)
    assert res.status == "failed"
    assert "model exploded" in res.reason


@pytest.mark.slow
def test_real_child_measures_the_demo_model(demo_model: Path) -> None:
    spec = TrialSpec.of(
        demo_model,
        {"n_threads": 2, "n_batch": 64, "n_ctx": 256, "n_gpu_layers": 0},
        {
            "prompt": "<|user|>\nBonjour</|user|>\n<|assistant|>\n",
            "next_prompt": "<|user|>\nBonjour</|user|>\n<|assistant|>\nSalut</|assistant|>\n",
            "max_tokens": 16,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 1,
            "warmup": True,
            "repeats": 2,
        },
    )
    res = ColdLauncher().run(spec, 600)  # generous: a busy machine, not a speed check
    assert res.status == "ok", res.reason + res.stderr_tail
    m = res.metrics
    assert m is not None
    assert m.n_generated == 16 and len(m.samples) == 2
    assert m.gen_tok_s > 0 and m.ttft_ms > 0 and m.prompt_tok_s > 0
    assert m.warm_ttft_ms is not None and m.peak_rss_mb > 50
    assert "buffer size" in res.payload["llama_log"]


@pytest.mark.slow
def test_eos_does_not_cut_the_count_short(demo_model: Path) -> None:
    """Greedy decoding right after an answer's end still yields exactly max_tokens tokens."""
    spec = TrialSpec.of(
        demo_model,
        {"n_threads": 2, "n_ctx": 512, "n_gpu_layers": 0},
        {
            "prompt": "<|im_start|>user\nSay only OK.<|im_end|>\n<|im_start|>assistant\nOK",
            "next_prompt": None,
            "max_tokens": 64,
            "temperature": 0.0,
            "top_p": 1.0,
            "seed": 1,
            "warmup": False,
            "repeats": 1,
        },
    )
    res = ColdLauncher().run(spec, 600)  # generous: a busy machine, not a speed check
    assert res.status == "ok", res.reason
    assert res.metrics is not None and res.metrics.n_generated == 64
