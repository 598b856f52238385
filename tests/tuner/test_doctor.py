"""`dm-tune doctor` on this machine (CPU-only build, no GPU) with the real demo model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tuner.cli import app
from tuner.doctor import reinstall_commands, render

runner = CliRunner()


def test_doctor_json_describes_machine_build_and_model(demo_model: Path) -> None:
    result = runner.invoke(app, ["doctor", "--model", str(demo_model), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    llama = report["llama_cpp"]
    assert llama["ok"] and llama["version"] and isinstance(llama["gpu_offload"], bool)
    assert "AVX" in llama["system_info"] or "NEON" in llama["system_info"]
    assert report["hardware"]["logical_cores"] >= 1
    m = report["model"]
    assert (m["architecture"], m["block_count"], m["offloadable_layers"]) == ("llama", 30, 31)
    assert (m["quantization"], m["context_length"]) == ("Q4_1", 8192)
    at_4096 = m["vram_full_offload"]["4096"]
    assert at_4096["kv_mb"] == 90.0  # 30 blocks x 4096 cells x 2 x 192 x f16
    assert m["vram_full_offload"]["trained"]["total_mb"] > at_4096["total_mb"]


def test_doctor_text(demo_model: Path) -> None:
    result = runner.invoke(app, ["doctor", "--model", str(demo_model)])
    assert result.exit_code == 0, result.output
    assert "31 offloadable layers" in result.output
    assert "llama-cpp-python" in result.output and "GPU offload" in result.output


def test_doctor_refuses_a_file_that_is_not_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_text("not a model")
    result = runner.invoke(app, ["doctor", "--model", str(bad)])
    assert result.exit_code == 2
    assert "not a GGUF file" in result.output


def test_reinstall_commands_pin_the_installed_version() -> None:
    cmds = reinstall_commands("0.3.36")
    assert cmds["bash"] == (
        'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir '
        "llama-cpp-python==0.3.36"
    )
    assert cmds["powershell"].startswith('$env:CMAKE_ARGS="-DGGML_CUDA=on"; pip install ')


def test_render_shouts_for_cpu_build_with_nvidia_gpu_from_a_canned_report() -> None:
    # No NVIDIA GPU here: the report is canned, the rendering is real.
    gpu = dict(
        index=0,
        name="NVIDIA GeForce RTX 4050 Laptop GPU",
        total_mb=6141.0,
        free_mb=5800.0,
        used_mb=341.0,
        driver="560.94",
        bandwidth_gb_s=192.0,
    )
    report: dict[str, Any] = {
        "hardware": dict(
            cpu="Intel Core i7",
            physical_cores=8,
            logical_cores=16,
            ram_mb=16000.0,
            os="Windows 11",
            gpus=[gpu],
        ),
        "llama_cpp": dict(
            ok=True, version="0.3.36", gpu_offload=False, system_info="CPU : AVX2 = 1"
        ),
        "warnings": ["llama-cpp-python is a CPU-only build but an NVIDIA GPU is present"],
        "fix": reinstall_commands("0.3.36"),
    }
    text = render(report)
    assert text.startswith("!!!")
    assert "WARNING" in text and "RTX 4050" in text
    assert '$env:CMAKE_ARGS="-DGGML_CUDA=on"; pip install' in text
    assert "NO (CPU-only build)" in text


def test_render_reports_a_crashing_build_plainly() -> None:
    report: dict[str, Any] = {
        "hardware": dict(
            cpu="x", physical_cores=1, logical_cores=1, ram_mb=1024.0, os="Linux", gpus=[]
        ),
        "llama_cpp": {"ok": False, "error": "importing llama_cpp crashed (signal 4): "},
        "warnings": ["llama-cpp-python is not usable: importing llama_cpp crashed (signal 4)"],
        "fix": None,
    }
    assert "crashed (signal 4)" in render(report)
