"""`dm-tune doctor`: what this machine and this llama-cpp-python build can do, before tuning.

Why: Desktop-Mate ran its model on the CPU for weeks because the installed wheel had no CUDA
support and nothing said so. doctor says so, loudly, with the command that fixes it.
It also shows what other processes hold on each GPU now (the desktop, the app's 3D avatar) and
suggests the --vram-budget that leaves them their share: the VRAM free now. On Windows it says
how to turn off the driver's sysmem fallback, which makes an over-budget setting slow instead of
failed (tuner/study/_spill.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from objectives.nvml import GpuInfo, GpuProcess, gpu_processes, sysmem_fallback_possible
from tuner.machine._hardware import detect

# Runs in a child so that a broken build (missing CUDA DLL, illegal instruction) can't take
# doctor down with it: the crash becomes a line in the report.
_PROBE = """
import json, llama_cpp
print(json.dumps({
    "version": llama_cpp.__version__,
    "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
}))
"""
REINSTALL_FLAGS = "--force-reinstall --no-cache-dir"
BUDGET_STEP_MB = 64  # the suggested --vram-budget is the free VRAM rounded down to this
SYSMEM_POLICY = "CUDA - Sysmem Fallback Policy"
SYSMEM_OFF = "Prefer No Sysmem Fallback"
SYSMEM_DRIVER = "536.40"  # the first driver with the setting


def suggested_budget_mb(free_mb: float) -> int:
    """The --vram-budget to suggest for this much free VRAM: rounded down to BUDGET_STEP_MB."""
    return int(free_mb // BUDGET_STEP_MB * BUDGET_STEP_MB)


def probe_llama_cpp(timeout_s: float = 120) -> dict[str, Any]:
    """Version, GPU offload support and CPU features of the installed llama-cpp-python."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"importing llama_cpp hung for {timeout_s:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
        return {"ok": False, "error": f"importing llama_cpp crashed ({how}): {tail}"}
    try:
        info: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"ok": False, "error": f"unreadable llama_cpp probe output: {proc.stdout[-200:]!r}"}
    return {"ok": True, **info}


def reinstall_commands(version: str) -> dict[str, str]:
    """The commands that rebuild llama-cpp-python with CUDA, same version, bash and PowerShell."""
    pkg = f"llama-cpp-python=={version}"
    return {
        "bash": f'CMAKE_ARGS="-DGGML_CUDA=on" pip install {REINSTALL_FLAGS} {pkg}',
        "powershell": f'$env:CMAKE_ARGS="-DGGML_CUDA=on"; pip install {REINSTALL_FLAGS} {pkg}',
    }


def _model_report(model: Path) -> dict[str, Any]:
    from tuner.vram import predict_vram, read_gguf

    info = read_gguf(model)  # raises UserError for a missing or non-GGUF file
    full: dict[str, Any] = {}
    ctxs = {"trained": info.context_length or 4096, "4096": 4096}
    for label, n_ctx in ctxs.items():
        pred = predict_vram(info, {"n_gpu_layers": -1, "n_ctx": n_ctx}, overhead_mb=0.0)
        full[label] = {"n_ctx": n_ctx, **pred.to_dict()}
    return {
        "path": str(info.path),
        "name": info.name,
        "architecture": info.architecture,
        "block_count": info.block_count,
        "offloadable_layers": info.offloadable_layers,
        "quantization": info.quantization,
        "size_mb": round(info.size_bytes / 2**20, 1),
        "context_length": info.context_length,
        "vram_full_offload": full,
    }


def process_name(pid: int) -> str:
    import psutil

    try:
        return psutil.Process(pid).name()
    except psutil.Error:  # gone, another user's, or outside this container
        return "unknown"


def vram_report(
    gpus: Sequence[GpuInfo],
    processes: Mapping[int, list[GpuProcess] | None],
    *,
    own_pid: int,
    name_of: Callable[[int], str] = process_name,
) -> dict[str, Any]:
    """Who holds VRAM on each GPU now, and the --vram-budget that leaves them their share.

    The budget is the free VRAM over all GPUs (llama.cpp spreads layers over every visible GPU,
    and dm-tune measures over all of them), rounded down to BUDGET_STEP_MB. Per-process figures
    are listed only where the driver gives them all (Windows WDDM gives none)."""
    out = []
    for g in gpus:
        procs = processes.get(g.index)
        listed = None
        if procs is not None:
            listed = [
                {
                    "pid": p.pid,
                    "name": name_of(p.pid),
                    "kinds": list(p.kinds),
                    "used_mb": None if p.used_mb is None else round(p.used_mb, 1),
                }
                for p in procs
                if p.pid != own_pid
            ]
        out.append(
            {
                "index": g.index,
                "name": g.name,
                "total_mb": round(g.total_mb, 1),
                "used_mb": round(g.used_mb, 1),
                "free_mb": round(g.free_mb, 1),
                "per_process": listed is not None and all(p["used_mb"] is not None for p in listed),
                "processes": listed,
            }
        )
    free = sum(g.free_mb for g in gpus)
    suggested = suggested_budget_mb(free) if gpus else None
    return {"gpus": out, "suggested_vram_budget_mb": suggested}


def sysmem_fallback_hint(
    platform: str, python: str, nvidia: bool, base_python: str | None = None
) -> dict[str, str | None] | None:
    """How to turn the driver's sysmem fallback off for `python` (Windows with an NVIDIA GPU;
    None elsewhere: the setting exists only in the Windows driver). A venv's python.exe on
    Windows starts its base interpreter (`base_python`), the process that really uses CUDA:
    both are named when they differ."""
    if not sysmem_fallback_possible(platform) or not nvidia:
        return None
    base = base_python if base_python and base_python != python else None
    also = f" and {base} (the interpreter the venv's python.exe starts)" if base else ""
    return {
        "python": python,
        "base_python": base,
        "setting": f'"{SYSMEM_POLICY}" = "{SYSMEM_OFF}"',
        "how": (
            f"NVIDIA Control Panel > Manage 3D settings > Program Settings > Add: {python}{also} "
            f'(and the python.exe that runs Desktop-Mate, if another) > "{SYSMEM_POLICY}" = '
            f'"{SYSMEM_OFF}" (driver {SYSMEM_DRIVER} or later)'
        ),
        "why": (
            "with the fallback on, a setting that does not fit in VRAM spills into system "
            "memory and is measured slow instead of failing; dm-tune marks the spills it can "
            "recognise as over budget, but only turning the fallback off makes them fail"
        ),
    }


def collect(model: Path | None, platform: str | None = None) -> dict[str, Any]:
    """Everything doctor knows, as plain JSON-able data (the --json output); `platform` is
    sys.platform's value (this machine's by default)."""
    hw = detect()
    # read with the GPUs' memory, before the llama_cpp probe child could hold any VRAM
    vram = vram_report(hw.gpus, gpu_processes(), own_pid=os.getpid())
    llama = probe_llama_cpp()
    nvidia = bool(hw.gpus)  # NVML lists NVIDIA GPUs only
    warnings: list[str] = []
    fix: dict[str, str] | None = None
    if llama.get("ok") and nvidia and not llama.get("gpu_offload"):
        fix = reinstall_commands(str(llama.get("version")))
        warnings.append(
            "llama-cpp-python is a CPU-only build but an NVIDIA GPU is present: every model "
            "runs on the CPU, whatever n_gpu_layers says. Reinstall it with CUDA."
        )
    if not llama.get("ok"):
        warnings.append(f"llama-cpp-python is not usable: {llama.get('error')}")
    report: dict[str, Any] = {
        "hardware": hw.to_dict(),
        "llama_cpp": llama,
        "vram": vram,
        "warnings": warnings,
        "fix": fix,
        "sysmem_fallback": sysmem_fallback_hint(
            platform or sys.platform,
            sys.executable,
            nvidia,
            getattr(sys, "_base_executable", None),
        ),
    }
    if model is not None:
        report["model"] = _model_report(model)
    return report


def _render_model(m: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"Model   {m['path']}",
        f"  {m['architecture']}, {m['block_count']} blocks = {m['offloadable_layers']} "
        f"offloadable layers (n_gpu_layers >= {m['offloadable_layers']} means all), "
        f"{m['quantization']}, {m['size_mb']:.0f} MiB, trained context {m['context_length']}",
    ]
    for p in m["vram_full_offload"].values():
        lines.append(
            f"  full offload at n_ctx {p['n_ctx']}: ~{p['total_mb']:.0f} MiB VRAM "
            f"(weights {p['weights_mb']:.0f} + KV {p['kv_mb']:.0f} + compute "
            f"{p['compute_mb']:.0f}, plus the CUDA context)"
        )
    return lines


def _render_vram(v: dict[str, Any], windows: bool) -> list[str]:
    lines = []
    for g in v["gpus"]:
        lines.append(
            f"VRAM {g['index']}  now: {g['total_mb']:.0f} MiB total, {g['used_mb']:.0f} MiB used, "
            f"{g['free_mb']:.0f} MiB free"
        )
        procs = g["processes"]
        if not g["per_process"]:
            lines.append(
                "  per-process figures unavailable (Windows WDDM does not report them): "
                "only used/free are shown"
            )
        elif procs:
            lines.append("  held by other processes:")
            for p in procs:
                lines.append(
                    f"    pid {p['pid']:>7}  {p['used_mb']:>6.0f} MiB  "
                    f"{'+'.join(p['kinds']):<16}  {p['name']}"
                )
        else:
            wddm = " (under Windows WDDM NVML may not list them)" if windows else ""
            lines.append(f"  no other process listed{wddm}")
    budget = v["suggested_vram_budget_mb"]
    if budget is not None:
        lines += [
            f"Suggested --vram-budget {budget}MB: the VRAM free now, next to the desktop and "
            f"whatever else runs, rounded down to {BUDGET_STEP_MB} MB.",
            "  Measure it with the app's avatar started first (and what you keep open) but no "
            "model loaded: the budget is the room left for the model.",
        ]
    return lines


def render(report: dict[str, Any]) -> str:
    """The report for people; the loud part first."""
    hw, llama = report["hardware"], report["llama_cpp"]
    lines: list[str] = []
    for w in report["warnings"]:
        lines += ["!" * 78, f"!! WARNING: {w}"]
    if report.get("fix"):
        fix = report["fix"]
        lines += [
            "!! bash / Linux / macOS:",
            f"   {fix['bash']}",
            "!! Windows PowerShell:",
            f"   {fix['powershell']}",
        ]
    if report["warnings"]:
        lines += ["!" * 78, ""]
    lines.append(
        f"CPU     {hw['cpu']}: {hw['physical_cores']} physical / {hw['logical_cores']} logical "
        f"cores, {hw['ram_mb'] / 1024:.1f} GiB RAM ({hw['os']})"
    )
    if not hw["gpus"]:
        lines.append("GPU     none found through NVML (no NVIDIA GPU or driver)")
    for g in hw["gpus"]:
        bw = f", {g['bandwidth_gb_s']:.0f} GB/s" if g.get("bandwidth_gb_s") else ""
        lines.append(
            f"GPU {g['index']}   {g['name']}: {g['total_mb']:.0f} MiB total, "
            f"{g['free_mb']:.0f} MiB free, driver {g['driver']}{bw}"
        )
    if report.get("vram"):
        lines += _render_vram(report["vram"], str(hw["os"]).startswith("Windows"))
    hint = report.get("sysmem_fallback")
    if hint:
        lines += [
            f"Sysmem fallback: turn it off for dm-tune's Python: {hint['how']}.",
            f"  Why: {hint['why']}.",
        ]
    if llama.get("ok"):
        offload = "yes" if llama["gpu_offload"] else "NO (CPU-only build)"
        lines.append(f"llama-cpp-python {llama['version']}: GPU offload {offload}")
        lines.append(f"  build features: {llama['system_info']}")
    else:
        lines.append(f"llama-cpp-python: {llama.get('error')}")
    if "model" in report:
        lines += _render_model(report["model"])
    return "\n".join(lines)
