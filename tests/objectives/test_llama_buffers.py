"""Buffer sizes parsed from real llama.cpp logs (one recorded here, CUDA ones from users)."""

from __future__ import annotations

from pathlib import Path

from objectives.llama_buffers import gpu_total_mb, is_gpu_device, parse_buffers

DATA = Path(__file__).resolve().parents[1] / "data"


def _log(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_cpu_log_of_the_demo_model() -> None:
    b = parse_buffers(_log("llama_log_cpu_demo.txt"))
    assert b == {
        "CPU_Mapped": {"model": 92.10},
        "CPU": {"output": 0.19, "kv": 45.00, "compute": 99.38},
    }
    assert gpu_total_mb(b) == 0.0


def test_recent_cuda_log_with_timestamps_and_colours() -> None:
    b = parse_buffers(_log("llama_log_cuda_27680.txt"))
    assert b == {"CUDA_Host": {"output": 0.49}, "CUDA0": {"kv": 182.75}}
    assert gpu_total_mb(b) == 182.75


def test_older_cuda_wording_full_offload() -> None:
    b = parse_buffers(_log("llama_log_cuda_llamafile_552.txt"))
    assert b["CUDA0"] == {"model": 7317.71, "kv": 180.00, "compute": 105.00}
    assert b["CPU"] == {"model": 297.00}
    assert b["CUDA_Host"] == {"output": 0.19}
    assert gpu_total_mb(b) == 7317.71 + 180.00 + 105.00


def test_two_gpus() -> None:
    b = parse_buffers(_log("llama_log_cuda_6122.txt"))
    assert b["CUDA0"] == {"model": 5434.38, "kv": 1536.00, "compute": 672.01}
    assert b["CUDA1"] == {"model": 13989.53, "kv": 3584.00}
    assert round(gpu_total_mb(b), 2) == round(5434.38 + 1536 + 672.01 + 13989.53 + 3584, 2)


def test_partial_offload_host_buffers_are_not_vram() -> None:
    b = parse_buffers(_log("llama_log_cuda_kobold_1609.txt"))
    assert b == {"CPU": {"model": 688.88}, "CUDA_Host": {"model": 15871.80}}
    assert gpu_total_mb(b) == 0.0


def test_weights_and_kv_add_up_but_compute_is_the_last_reservation() -> None:
    text = "\n".join(
        [
            "load_tensors:   CPU_Mapped model buffer size =   100.00 MiB",
            "load_tensors:   CPU_Mapped model buffer size =    50.00 MiB",
            "llama_kv_cache:      CUDA0 KV buffer size =   10.00 MiB",
            "llama_kv_cache:      CUDA0 KV buffer size =    5.00 MiB",
            "sched_reserve:      CUDA0 compute buffer size =   30.00 MiB",
            "sched_reserve:      CUDA0 compute buffer size =   40.00 MiB",
            "~llama_context:        CUDA0 compute buffer size is  40.0000 MiB, matches expectation",
        ]
    )
    assert parse_buffers(text) == {
        "CPU_Mapped": {"model": 150.0},
        "CUDA0": {"kv": 15.0, "compute": 40.0},
    }


def test_device_names() -> None:
    for gpu in ("CUDA0", "CUDA12", "ROCm0", "Vulkan1", "Metal", "MTL0", "SYCL0"):
        assert is_gpu_device(gpu), gpu
    for host in ("CPU", "CPU_Mapped", "CPU_REPACK", "CUDA_Host", "CUDA0_Host"):
        assert not is_gpu_device(host), host
