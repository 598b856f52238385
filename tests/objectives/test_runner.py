"""The parent side of a trial, against real child processes with canned behaviour."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from objectives.launch import describe_exit, run_child
from tests.conftest import stand_in

SPEC = {"model_path": "unused", "params": {"n_threads": 2}, "workload": {}}


def test_canned_result_is_read_back() -> None:
    res = run_child(SPEC, 60, argv=list(stand_in("canned")))
    assert res.status == "ok", res.reason
    assert res.metrics is not None
    assert res.metrics.gen_tok_s == 52.0
    assert res.metrics.vram_mb is None  # no GPU here: unknown, never a fake 0


def test_crash_is_recorded_with_signal_and_phase() -> None:
    res = run_child(SPEC, 60, argv=list(stand_in("crash_always")))
    assert res.status == "crashed"
    assert "SIGSEGV" in res.reason
    assert res.phase == "smoke decode"
    assert "SIGSEGV" in describe_exit(res.returncode or 0)


def test_hang_times_out_and_the_whole_tree_is_ended(tmp_path: Path) -> None:
    spec = {**SPEC, "params": {"n_threads": 1}}
    t0 = time.perf_counter()
    res = run_child(spec, 3, argv=list(stand_in("hang")))
    assert res.status == "timeout"
    assert "timed out after 3 s" in res.reason
    assert time.perf_counter() - t0 < 20
    # the grandchild the stand-in started must be gone too
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        assert "time.sleep(600)" not in cmd, "grandchild survived the timeout"


def test_out_of_memory_text_is_classified() -> None:
    res = run_child(SPEC, 60, argv=list(stand_in("oom")))
    assert res.status == "oom"
    assert res.reason.startswith("out of memory")


def test_python_error_in_child_is_a_failure_with_its_message(tmp_path: Path) -> None:
    script = tmp_path / "boom.py"
    script.write_text("raise RuntimeError('model exploded')\n")
    res = run_child(SPEC, 60, argv=["python", str(script)])
    assert res.status == "failed"
    assert "model exploded" in res.reason


@pytest.mark.slow
def test_real_child_measures_the_demo_model(demo_model: Path) -> None:
    spec = {
        "model_path": str(demo_model),
        "params": {"n_threads": 2, "n_batch": 64, "n_ctx": 256, "n_gpu_layers": 0},
        "workload": {
            "prompt": "<|user|>\nBonjour</|user|>\n<|assistant|>\n",
            "next_prompt": "<|user|>\nBonjour</|user|>\n<|assistant|>\nSalut</|assistant|>\n",
            "max_tokens": 16,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 1,
            "warmup": True,
            "repeats": 2,
        },
    }
    res = run_child(spec, 120)
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
    spec = {
        "model_path": str(demo_model),
        "params": {"n_threads": 2, "n_ctx": 512, "n_gpu_layers": 0},
        "workload": {
            "prompt": "<|im_start|>user\nSay only OK.<|im_end|>\n<|im_start|>assistant\nOK",
            "next_prompt": None,
            "max_tokens": 64,
            "temperature": 0.0,
            "top_p": 1.0,
            "seed": 1,
            "warmup": False,
            "repeats": 1,
        },
    }
    res = run_child(spec, 120)
    assert res.status == "ok", res.reason
    assert res.metrics is not None and res.metrics.n_generated == 64
