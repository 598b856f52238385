"""Make a big GPU behave like a small one: hold device memory with plain cudaMalloc until stopped.

    # a "6 GB card": everything but 6144 MiB is held (this process's CUDA context included)
    python scripts/gpu_hold.py --leave 6144 --ready-file /tmp/hold.ready &
    # the desktop and the app's avatar on that card: 600 MiB more, as another process
    python scripts/gpu_hold.py --take 600 --name desktop --ready-file /tmp/desktop.ready &

Allocations are device memory (`cudaMalloc`, no managed memory), so other processes, llama.cpp
included, really run out of memory instead of spilling: `cudaMemGetInfo`, NVML and nvidia-smi
all show the smaller free amount. `--take` counts the holder's own CUDA context (read through NVML
before the context exists), so the "desktop" costs what it says. The holder writes one JSON
line (and `--ready-file`) when it holds its memory, and frees it on SIGTERM/SIGINT.

Only the CUDA runtime is needed (`libcudart.so` of the toolkit or of the `nvidia-cuda-runtime`
wheel; `--cudart PATH` to choose); pynvml is used for `--take` when present.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import json
import os
import signal
import sys
import threading
from pathlib import Path

MIB = 2**20
CHUNKS_MIB = (1024, 256, 64, 16, 2)  # big first, then smaller until the target is met


class CudaError(RuntimeError):
    pass


def find_cudart(explicit: str | None = None) -> str:
    """The CUDA runtime library's path, or a CudaError that says how to give it."""
    if explicit:
        return explicit
    named = ctypes.util.find_library("cudart")
    if named:
        return named
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    patterns = [f"{r}/lib64/libcudart.so*" for r in roots if r] + [
        f"{r}/targets/*/lib/libcudart.so*" for r in roots if r
    ]
    patterns += [f"{p}/nvidia/cuda_runtime/lib/libcudart.so*" for p in sys.path if p]
    for pattern in patterns:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    raise CudaError("no libcudart found: install the CUDA toolkit or pass --cudart PATH")


class Cuda:
    """The few CUDA runtime calls a holder needs."""

    def __init__(self, path: str, device: int) -> None:
        self.lib = ctypes.CDLL(path)
        self._check(self.lib.cudaSetDevice(ctypes.c_int(device)), "cudaSetDevice")
        self._check(self.lib.cudaFree(ctypes.c_void_p(0)), "creating the CUDA context")

    def _check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise CudaError(f"{what} failed (cudaError {rc})")

    def mem_info(self) -> tuple[int, int]:
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self._check(
            self.lib.cudaMemGetInfo(ctypes.byref(free), ctypes.byref(total)), "cudaMemGetInfo"
        )
        return free.value, total.value

    def malloc(self, size: int) -> ctypes.c_void_p | None:
        ptr = ctypes.c_void_p()
        if self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(size)) != 0:
            self.lib.cudaGetLastError()  # clear the sticky-free error so later calls work
            return None
        return ptr

    def free(self, ptr: ctypes.c_void_p) -> None:
        self.lib.cudaFree(ptr)


def nvml_free_bytes(device: int) -> int | None:
    """Device free memory before this process has a CUDA context (NVML), None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(device))
        return int(info.free)
    except Exception:
        return None


def fill_to(cuda: Cuda, target_free: int) -> list[ctypes.c_void_p]:
    """Allocate until the device's free memory is within 2 MiB above `target_free`."""
    held: list[ctypes.c_void_p] = []
    for chunk in (c * MIB for c in CHUNKS_MIB):
        while cuda.mem_info()[0] - target_free >= chunk:
            ptr = cuda.malloc(chunk)
            if ptr is None:  # another process took memory meanwhile: try a smaller chunk
                break
            held.append(ptr)
    return held


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--leave", type=int, metavar="MIB", help="hold all but MIB of free memory")
    what.add_argument("--take", type=int, metavar="MIB", help="hold MIB (context included)")
    ap.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    ap.add_argument("--name", default="holder", help="a label for the printed line")
    ap.add_argument("--ready-file", type=Path, help="written with the JSON line once holding")
    ap.add_argument("--cudart", help="path of libcudart (default: searched)")
    a = ap.parse_args(argv)
    for opt in ("leave", "take"):
        v = getattr(a, opt)
        if v is not None and v < 0:
            ap.error(f"--{opt} must be >= 0 MiB, got {v}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    before = nvml_free_bytes(a.device) if a.take is not None else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cuda = Cuda(find_cudart(a.cudart), a.device)
        free, total = cuda.mem_info()
        if a.leave is not None:
            target = a.leave * MIB
        else:
            start = before if before is not None else free
            target = max(start - a.take * MIB, 0)
        if free < target:
            raise CudaError(
                f"only {free // MIB} MiB free, fewer than the {target // MIB} MiB to leave"
            )
        held = fill_to(cuda, target)
    except (CudaError, OSError) as e:
        print(f"error: {a.name}: {e}", file=sys.stderr)
        return 2
    free_now = cuda.mem_info()[0]
    line = json.dumps(
        {
            "name": a.name,
            "pid": os.getpid(),
            "device": a.device,
            "total_mib": total // MIB,
            "allocated_mib": (free - free_now) // MIB,
            "taken_mib": (before - free_now) // MIB if before is not None else None,
            "free_mib": free_now // MIB,
        }
    )
    print(line, flush=True)
    if a.ready_file:
        tmp = a.ready_file.with_suffix(".tmp")
        tmp.write_text(line + "\n")
        tmp.replace(a.ready_file)
    while not stop.wait(1.0):
        pass
    for ptr in held:
        cuda.free(ptr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
