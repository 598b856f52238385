"""Before a study: ask a child process what the build can do, and catch a crashing build early."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from objectives.launch import ChildResult, ColdLauncher, Launcher, is_crash
from objectives.probe import ProbeSpec
from tuner.errors import UserError

SMOKE_PARAMS = {"n_gpu_layers": 0, "n_ctx": 256, "n_batch": 32}
PORTABLE_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"


@dataclass(frozen=True)
class Probe:
    llama_cpp_version: str
    gpu_offload: bool
    system_info: str
    n_tokens: tuple[int, ...]
    smoke_vram_mb: float | None = None  # VRAM of a load with no layer offloaded (GPU builds)


def rebuild_hint(version: str | None = None) -> str:
    pin = f"=={version}" if version else ""
    return (
        f'CMAKE_ARGS="{PORTABLE_CMAKE_ARGS}" pip install --force-reinstall --no-cache-dir '
        f"llama-cpp-python{pin} (add -DGGML_CUDA=on for an NVIDIA GPU)"
    )


def crash_diagnosis(result: ChildResult, version: str | None = None) -> str:
    """One line saying why llama-cpp-python keeps crashing and how to fix it."""
    from objectives.launch import describe_exit

    how = describe_exit(result.returncode or 0)
    return (
        f"llama-cpp-python crashed ({how}) during {result.phase or 'start-up'} on this machine; "
        "this usually means the build uses CPU instructions this machine or VM does not allow "
        "(a native build that enabled AMX or AVX-512, for example); rebuild it portable: "
        + rebuild_hint(version)
    )


def run_probe(
    model: Path,
    texts: list[str],
    timeout_s: float = 300,
    smoke: bool = True,
    launcher: Launcher | None = None,
) -> Probe:
    """Probe in a fresh trial child (`launcher`: a cold one of the real child unless given)."""
    spec = ProbeSpec(str(model), tuple(texts), smoke, SMOKE_PARAMS)
    res = (launcher or ColdLauncher()).run(spec, timeout_s)
    version = res.payload.get("llama_cpp_version")
    if res.status == "crashed" or (res.returncode is not None and is_crash(res.returncode)):
        raise UserError(crash_diagnosis(res, version))
    if res.status == "timeout":
        raise UserError(
            f"checking the model with llama-cpp-python took over {timeout_s:g} s "
            f"(during {res.phase}); is the machine overloaded or the model on a slow disk?"
        )
    if res.status != "ok":
        if "No module named 'llama_cpp'" in res.stderr_tail:
            raise UserError("llama-cpp-python is not installed; pip install llama-cpp-python")
        detail = res.reason or res.stderr_tail.splitlines()[-1:]
        raise UserError(f"llama-cpp-python could not load {model.name}: {detail}")
    p = res.payload
    return Probe(
        llama_cpp_version=str(p["llama_cpp_version"]),
        gpu_offload=bool(p["gpu_offload"]),
        system_info=str(p.get("system_info", "")),
        n_tokens=tuple(int(n) for n in p["n_tokens"]),
        smoke_vram_mb=res.gpu.vram_mb,
    )
