"""`dm-tune doctor`: what this machine and this llama-cpp-python build can do, before tuning.

Why: Desktop-Mate ran its model on the CPU for weeks because the installed wheel had no CUDA
support and nothing said so. doctor says so, loudly, with the command that fixes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tuner.hardware import detect

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
    from tuner.gguf_info import read_gguf
    from tuner.vram_predict import predict_vram

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


def collect(model: Path | None) -> dict[str, Any]:
    """Everything doctor knows, as plain JSON-able data (the --json output)."""
    hw = detect()
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
        "warnings": warnings,
        "fix": fix,
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
    if llama.get("ok"):
        offload = "yes" if llama["gpu_offload"] else "NO (CPU-only build)"
        lines.append(f"llama-cpp-python {llama['version']}: GPU offload {offload}")
        lines.append(f"  build features: {llama['system_info']}")
    else:
        lines.append(f"llama-cpp-python: {llama.get('error')}")
    if "model" in report:
        lines += _render_model(report["model"])
    return "\n".join(lines)
