"""`dm-tune doctor` on this machine (CPU-only build, no GPU) with the real demo model."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import sys
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

import tuner.machine._doctor
from objectives.nvml import GpuInfo, GpuProcess, _merge
from tuner.cli import app
from tuner.machine import (
    Hardware,
    collect,
    reinstall_commands,
    render,
    sysmem_fallback_hint,
    vram_report,
)

runner = CliRunner()


def test_doctor_json_describes_machine_build_and_model(demo_model: Path) -> None:
    result = runner.invoke(app, ["doctor", "--model", str(demo_model), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    llama = report["llama_cpp"]
    assert llama["ok"] and llama["version"] and isinstance(llama["gpu_offload"], bool)
    assert "AVX" in llama["system_info"] or "NEON" in llama["system_info"]
    assert report["hardware"]["logical_cores"] >= 1
    vram = report["vram"]  # one entry per GPU; no suggested budget without one
    assert len(vram["gpus"]) == len(report["hardware"]["gpus"])
    assert (vram["suggested_vram_budget_mb"] is None) == (not report["hardware"]["gpus"])
    assert report["sysmem_fallback"] is None  # not Windows: nothing to say
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


def test_a_cpu_build_with_a_simulated_nvidia_gpu_gets_a_reinstall_pinned_to_its_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The build installed here is CPU-only and really probed; the GPU is simulated (NVML would
    list it): doctor must warn and pin the reinstall to the version the probe found."""
    real = tuner.machine._doctor.detect()
    monkeypatch.setattr(tuner.machine._doctor, "detect", lambda: replace(real, gpus=(RTX_4050,)))
    report = collect(None)
    installed = importlib.metadata.version("llama_cpp_python")
    assert report["llama_cpp"]["version"] == installed
    assert report["llama_cpp"]["gpu_offload"] is False
    assert report["fix"]["bash"].endswith(f" llama-cpp-python=={installed}")
    assert report["fix"]["powershell"].endswith(f" llama-cpp-python=={installed}")
    assert "CPU-only build but an NVIDIA GPU is present" in report["warnings"][0]
    assert render(report).startswith("!!!")


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


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_build_that_crashes_on_import_is_a_warning_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a native build does on a CPU without the instructions it was built for: a stand-in
    llama_cpp, first on the probe child's path, that dies of SIGILL on import."""
    (tmp_path / "llama_cpp.py").write_text(
        "import os, signal, sys\nprint('illegal instruction', file=sys.stderr, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGILL)\n"
    )
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH")) if p)
    )
    report = collect(None)
    error = f"importing llama_cpp crashed (signal {int(signal.SIGILL)}): illegal instruction"
    assert report["llama_cpp"] == {"ok": False, "error": error}
    assert report["warnings"] == [f"llama-cpp-python is not usable: {error}"]
    assert report["fix"] is None  # no version to pin: nothing says which build would work
    text = render(report)
    assert text.startswith("!!!") and f"llama-cpp-python: {error}" in text


# Who holds VRAM, and the suggested budget: no GPU here, so NVML's lists and the GPU's memory are
# constructed readings (an RTX 4050 laptop: the compositor and the app's Unity avatar on it).
RTX_4050 = GpuInfo(
    index=0,
    name="NVIDIA GeForce RTX 4050 Laptop GPU",
    total_mb=6141.0,
    used_mb=1190.0,
    free_mb=4951.0,
    driver="560.94",
    bandwidth_gb_s=192.0,
)
NAMES = {4321: "DesktopMateAvatar.exe", 1200: "dwm.exe", 99: "dm-tune.exe"}


def _hardware(os_name: str) -> dict[str, Any]:
    return dict(
        cpu="Intel Core i7",
        physical_cores=8,
        logical_cores=16,
        ram_mb=16000.0,
        os=os_name,
        gpus=[asdict(RTX_4050)],
    )


def _canned(vram: dict[str, Any], os_name: str = "Linux 6.8") -> dict[str, Any]:
    return {
        "hardware": _hardware(os_name),
        "llama_cpp": dict(ok=True, version="0.3.36", gpu_offload=True, system_info="CUDA : 1"),
        "vram": vram,
        "warnings": [],
        "fix": None,
    }


def test_constructed_nvml_lists_merge_compute_and_graphics_by_pid() -> None:
    def proc(pid: int, mib: float | None) -> SimpleNamespace:
        return SimpleNamespace(pid=pid, usedGpuMemory=None if mib is None else int(mib * 2**20))

    nv = SimpleNamespace(
        nvmlDeviceGetComputeRunningProcesses=lambda h: [proc(77, 300.0)],
        nvmlDeviceGetGraphicsRunningProcesses=lambda h: [proc(4321, 612.0), proc(77, None)],
    )
    assert _merge(nv, object()) == [
        GpuProcess(4321, ("graphics",), 612.0),
        GpuProcess(77, ("compute", "graphics"), 300.0),
    ]


def test_constructed_readings_list_other_processes_and_suggest_the_free_vram() -> None:
    procs = {
        0: [
            GpuProcess(4321, ("graphics",), 612.0),
            GpuProcess(1200, ("graphics",), 350.5),
            GpuProcess(99, ("compute",), 2.0),  # doctor itself: not "another process"
        ]
    }
    v = vram_report([RTX_4050], procs, own_pid=99, name_of=NAMES.__getitem__)
    json.dumps(v)  # the --json output
    gpu = v["gpus"][0]
    assert (gpu["total_mb"], gpu["used_mb"], gpu["free_mb"]) == (6141.0, 1190.0, 4951.0)
    assert gpu["per_process"] is True
    assert [(p["pid"], p["name"], p["used_mb"]) for p in gpu["processes"]] == [
        (4321, "DesktopMateAvatar.exe", 612.0),
        (1200, "dwm.exe", 350.5),
    ]
    assert v["suggested_vram_budget_mb"] == 4928  # 4951 rounded down to 64 MB
    text = render(_canned(v))
    assert "6141 MiB total, 1190 MiB used, 4951 MiB free" in text
    assert "612 MiB  graphics" in text and "DesktopMateAvatar.exe" in text
    assert "dm-tune.exe" not in text
    assert "Suggested --vram-budget 4928MB" in text and "avatar started first" in text


def test_constructed_wddm_readings_show_only_used_and_free() -> None:
    # Windows WDDM: NVML lists the processes but not their memory.
    procs = {0: [GpuProcess(4321, ("graphics",), None), GpuProcess(1200, ("graphics",), None)]}
    v = vram_report([RTX_4050], procs, own_pid=99, name_of=NAMES.__getitem__)
    assert v["gpus"][0]["per_process"] is False
    text = render(_canned(v, "Windows 11"))
    assert "per-process figures unavailable (Windows WDDM" in text
    assert "4951 MiB free" in text and "pid" not in text
    assert "Suggested --vram-budget 4928MB" in text


def test_constructed_readings_when_nvml_cannot_list_processes() -> None:
    v = vram_report([RTX_4050], {0: None}, own_pid=99, name_of=NAMES.__getitem__)
    assert v["gpus"][0]["processes"] is None and v["gpus"][0]["per_process"] is False
    assert "only used/free are shown" in render(_canned(v, "Windows 11"))


def test_no_gpu_no_vram_section_and_no_suggested_budget() -> None:
    v = vram_report([], {}, own_pid=99)
    assert v == {"gpus": [], "suggested_vram_budget_mb": None}
    report = _canned(v)
    report["hardware"]["gpus"] = []
    text = render(report)
    assert "none found through NVML" in text and "--vram-budget" not in text


def _simulated_windows_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    """The RTX 4050 laptop as doctor would read it: NVML and the build probe simulated."""
    hw = Hardware("Intel Core i7", 8, 16, 16000.0, "Windows 11", (RTX_4050,))
    monkeypatch.setattr(tuner.machine._doctor, "detect", lambda: hw)
    monkeypatch.setattr(tuner.machine._doctor, "gpu_processes", lambda: {0: None})
    probe = dict(ok=True, version="0.3.36", gpu_offload=True, system_info="CUDA : 1")
    monkeypatch.setattr(tuner.machine._doctor, "probe_llama_cpp", lambda: probe)


def test_simulated_windows_doctor_says_how_to_turn_the_sysmem_fallback_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _simulated_windows_laptop(monkeypatch)
    monkeypatch.setattr(sys, "_base_executable", sys.executable, raising=False)  # no venv
    report = collect(None, platform="win32")
    hint = json.loads(json.dumps(report))["sysmem_fallback"]  # the --json field
    assert hint["python"] == sys.executable
    assert hint["setting"] == '"CUDA - Sysmem Fallback Policy" = "Prefer No Sysmem Fallback"'
    text = render(report)
    (line,) = [ln for ln in text.splitlines() if ln.startswith("Sysmem fallback:")]
    assert line == (
        "Sysmem fallback: turn it off for dm-tune's Python: NVIDIA Control Panel > Manage 3D "
        f"settings > Program Settings > Add: {sys.executable} (and the python.exe that runs "
        'Desktop-Mate, if another) > "CUDA - Sysmem Fallback Policy" = "Prefer No Sysmem '
        'Fallback" (driver 536.40 or later).'
    )
    assert "measured slow instead of failing" in text


def test_a_windows_venv_names_its_base_interpreter_too() -> None:
    venv, base = r"C:\dm-tune\.venv\Scripts\python.exe", r"C:\Python311\python.exe"
    hint = sysmem_fallback_hint("win32", venv, True, base)
    assert hint is not None and hint["base_python"] == base
    assert f"Add: {venv} and {base} (the interpreter the venv's python.exe starts)" in str(
        hint["how"]
    )
    same = sysmem_fallback_hint("win32", venv, True, venv)
    assert same is not None and same["base_python"] is None


def test_simulated_gpu_on_linux_or_windows_without_nvidia_gpu_gets_no_sysmem_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _simulated_windows_laptop(monkeypatch)
    linux = collect(None, platform="linux")
    assert linux["sysmem_fallback"] is None and "Sysmem" not in render(linux)
    monkeypatch.setattr(
        tuner.machine._doctor, "detect", lambda: Hardware("x", 1, 1, 1024.0, "Windows 11", ())
    )
    no_gpu = collect(None, platform="win32")
    assert no_gpu["sysmem_fallback"] is None and "Sysmem" not in render(no_gpu)
