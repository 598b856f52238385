"""The GPU scripts of the "6 GB card" runs, on a machine without a GPU (they run on the lent H200).

What can be checked here: arguments, the one-line errors, the fill algorithm against a simulated
CUDA runtime (no GPU here), and that the shell scripts parse.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest

from tuner.bench import gpu_hold

ROOT = Path(__file__).resolve().parents[2]
MIB = gpu_hold.MIB


class SimulatedCuda:
    """Device memory as a number: cudaMalloc fails past what is free, like the real one."""

    def __init__(self, free_mib: int, steal_after: int | None = None) -> None:
        self.free_b = free_mib * MIB
        self.calls = 0
        self.steal_after = steal_after  # another process takes 100 MiB after this many calls

    def mem_info(self) -> tuple[int, int]:
        return self.free_b, 143_155 * MIB

    def malloc(self, size: int) -> ctypes.c_void_p | None:
        self.calls += 1
        if self.steal_after is not None and self.calls == self.steal_after:
            self.free_b -= 100 * MIB
        if size > self.free_b:
            return None
        self.free_b -= size
        return ctypes.c_void_p(self.calls)


@pytest.mark.parametrize("free_mib", [143_000, 6145, 6144, 7000])
def test_simulated_fill_leaves_what_was_asked(free_mib: int) -> None:
    cuda = SimulatedCuda(free_mib)
    held = gpu_hold.fill_to(cuda, 6144 * MIB)  # type: ignore[arg-type]
    assert 6144 * MIB <= cuda.free_b < 6146 * MIB
    assert len(held) == cuda.calls  # big chunks first: a few hundred calls, not 70,000
    assert len(held) < 200


def test_simulated_fill_survives_another_process_taking_memory() -> None:
    cuda = SimulatedCuda(20_000, steal_after=5)
    gpu_hold.fill_to(cuda, 6144 * MIB)  # type: ignore[arg-type]
    assert 6144 * MIB <= cuda.free_b < 6146 * MIB


def _hold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/gpu_hold.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--leave", "-1"], "--leave must be >= 0 MiB"),
        (["--leave", "1", "--take", "1"], "not allowed with argument"),
        ([], "one of the arguments --leave --take is required"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str) -> None:
    res = _hold(*args)
    assert res.returncode == 2 and message in res.stderr


def test_no_cuda_runtime_is_one_line_and_exit_2(tmp_path: Path) -> None:
    res = _hold("--leave", "6144", "--cudart", str(tmp_path / "libcudart.so"), "--name", "card")
    assert res.returncode == 2
    assert res.stderr.startswith("error: card: ") and res.stderr.count("\n") == 1
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize(
    "script", ["gpu_run.sh", "gpu_issue11.sh", "gpu_issue14.sh", "gpu_build.sh"]
)
def test_gpu_shell_scripts_parse(script: str) -> None:
    res = subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], capture_output=True)
    assert res.returncode == 0, res.stderr
