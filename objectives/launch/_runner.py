"""Parent side of a trial: spawn the child, watch time and GPU, end the whole process tree.

Portable: the child is a fresh interpreter (no fork), process trees are ended through psutil.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from objectives import phases
from objectives.launch._prewarm import WarmPool
from objectives.launch._spawned import Spawned
from objectives.llama_log import looks_oom
from objectives.metrics import TrialMetrics
from objectives.nvml import GpuReading, GpuSampler

Status = Literal["ok", "failed", "oom", "crashed", "timeout", "pruned"]


@dataclass(frozen=True)
class Watch:
    """What the parent knows about a running trial child, for a pruning decision."""

    phase: str | None
    elapsed_s: float  # since the first measured answer started (repeat 1)
    tokens: int  # generated so far in the first measured answer
    ttft_s: float | None  # its first-token latency once known
    gen_s: float  # seconds from its first token to the latest progress line
    vram_mb: float | None  # peak so far (None without a readable GPU)

    @property
    def gen_tok_s(self) -> float | None:
        return (self.tokens - 1) / self.gen_s if self.tokens > 1 and self.gen_s > 0 else None


Watcher = Callable[[Watch], str | None]

POLL_S = 0.05
# NTSTATUS codes a crashed Windows process exits with.
WINDOWS_CRASHES = {
    0xC0000005: "ACCESS_VIOLATION",
    0xC000001D: "ILLEGAL_INSTRUCTION",
    0xC00000FD: "STACK_OVERFLOW",
    0xC0000409: "STACK_BUFFER_OVERRUN",
    0xC0000374: "HEAP_CORRUPTION",
}


@dataclass(frozen=True)
class ChildResult:
    status: Status
    reason: str  # one line for people; empty when ok
    metrics: TrialMetrics | None = None
    returncode: int | None = None
    phase: str | None = None  # last phase the child reached
    stderr_tail: str = ""
    gpu: GpuReading = field(default_factory=lambda: GpuReading(None, None))
    wall_s: float = 0.0
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        """Same failure, same signature: used to spot a build that crashes every time."""
        return f"{self.status}|{self.returncode}|{self.phase}"


def describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return f"signal {-rc}"
    code = rc & 0xFFFFFFFF
    if code in WINDOWS_CRASHES:
        return WINDOWS_CRASHES[code]
    return f"exit code {rc}"


def is_crash(rc: int) -> bool:
    return rc < 0 or (rc & 0xFFFFFFFF) in WINDOWS_CRASHES


def _watch(text: str, elapsed: float, vram: float | None) -> Watch:
    tokens, ttft, gen = 0, None, 0.0
    for line in text.splitlines():
        if line.startswith(phases.PROGRESS_PREFIX):
            parts = line.split()
            tokens, ttft, gen = int(parts[1]), float(parts[2]), float(parts[3])
    return Watch(phases.last_phase(text), elapsed, tokens, ttft, gen, vram)


def _tail(text: str, n: int = 20) -> str:
    lines = [ln for ln in text.splitlines() if not ln.startswith(phases.MARKER_PREFIX)]
    return "\n".join(lines[-n:])


def run_spawned(
    child: Spawned,
    timeout_s: float,
    *,
    sample_gpu: bool,
    watcher: Watcher | None,
    wait_for: WarmPool | None,  # measure only once this pool's spare is ready (None: at once)
) -> ChildResult:
    """Watch a started child to completion, timeout or crash, then release its folder; never
    raises for child failures. KeyboardInterrupt ends the child's whole tree before it
    propagates."""
    try:
        return _watch_child(child, timeout_s, sample_gpu, watcher, wait_for)
    finally:
        child.close()


@dataclass
class _Watching:
    """What watching a running child has seen so far."""

    t0: float
    gated: bool  # waits for "go" after its model load
    timed_out: bool = False
    pruned: str | None = None
    started: float | None = None  # when repeat 1 was first seen


def _watch_child(
    child: Spawned,
    timeout_s: float,
    sample_gpu: bool,
    watcher: Watcher | None,
    wait_for: WarmPool | None,  # measure only once this pool's spare is ready (None: at once)
) -> ChildResult:
    proc = child.proc
    sampler = GpuSampler() if sample_gpu else None
    t0 = time.perf_counter()
    if sampler is not None:
        sampler.start(proc.pid)
    w = _Watching(t0=t0, gated=child.waiting)
    try:
        while True:
            try:
                proc.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                if _poll(child, w, timeout_s, sampler, watcher, wait_for):
                    break
    except BaseException:
        child.end()
        if sampler is not None:
            sampler.stop()
        raise
    wall = time.perf_counter() - t0
    gpu = sampler.stop() if sampler is not None else GpuReading(None, None)
    stderr = child.stderr_text()
    payload = _read_payload(child)
    rc = proc.returncode
    if w.pruned:
        return ChildResult(
            "pruned",
            w.pruned,
            returncode=rc,
            phase=phases.last_phase(stderr),
            gpu=gpu,
            wall_s=wall,
            payload={"watch": asdict(_watch(stderr, t0 + wall - (w.started or t0), gpu.vram_mb))},
        )
    return _classify(rc, w.timed_out, timeout_s, payload, stderr, gpu, wall)


def _poll(
    child: Spawned,
    w: _Watching,
    timeout_s: float,
    sampler: GpuSampler | None,
    watcher: Watcher | None,
    wait_for: WarmPool | None,
) -> bool:
    """One look at a running child: end it past its timeout, let a gated one go once loaded,
    tell the sampler whether it generates, ask the watcher whether to prune. True: stop."""
    if time.perf_counter() - w.t0 > timeout_s:
        w.timed_out = True
        child.end()
        return True
    text = child.stderr_text()
    phase = phases.last_phase(text)
    if w.gated and phase == phases.LOADED and (wait_for is None or wait_for.spare_settled()):
        child.send("go")
        w.gated = False
    if sampler is not None:
        sampler.mark_generation(phases.is_measuring(phase))
    if watcher is not None and phase == phases.repeat(1):
        now = time.perf_counter()
        w.started = w.started or now
        vram = sampler.peak_mb() if sampler is not None else None
        w.pruned = watcher(_watch(text, now - w.started, vram))
        if w.pruned:
            child.end()
            return True
    return False


def _read_payload(child: Spawned) -> dict[str, Any]:
    """The child's result file ({} when it wrote none, or an unreadable one)."""
    if not child.result_path.exists():
        return {}
    try:
        payload: dict[str, Any] = json.loads(child.result_path.read_text("utf-8"))
    except ValueError:
        return {}
    return payload


def _classify(
    rc: int,
    timed_out: bool,
    timeout_s: float,
    payload: dict[str, Any],
    stderr: str,
    gpu: GpuReading,
    wall: float,
) -> ChildResult:
    phase, tail = phases.last_phase(stderr), _tail(stderr)
    common: dict[str, Any] = {
        "returncode": rc,
        "phase": phase,
        "stderr_tail": tail,
        "gpu": gpu,
        "wall_s": wall,
        "payload": payload,
    }
    if timed_out:
        return ChildResult("timeout", f"timed out after {timeout_s:g} s (during {phase})", **common)
    if payload.get("ok") and rc == 0 and "metrics" in payload:
        m = TrialMetrics.from_dict(payload["metrics"])
        from dataclasses import replace

        m = replace(m, vram_mb=gpu.vram_mb, vram_source=gpu.vram_source)
        return ChildResult("ok", "", metrics=m, **common)
    if payload.get("ok") and rc == 0:
        return ChildResult("ok", "", **common)
    if payload.get("kind") == "oom" or looks_oom(payload.get("log", "") + "\n" + stderr):
        first = payload.get("error") or _oom_line(stderr) or "out of memory"
        return ChildResult("oom", f"out of memory: {first}", **common)
    if payload:
        return ChildResult("failed", str(payload.get("error", "failed")).splitlines()[0], **common)
    if is_crash(rc) and gpu_was_full(gpu):
        return ChildResult(
            "oom",
            f"out of memory: crashed with {describe_exit(rc)} during {phase} while the GPU was "
            f"full ({gpu.device_used_mb:.0f} of {gpu.device_total_mb:.0f} MB in use)",
            **common,
        )
    if is_crash(rc):
        return ChildResult("crashed", f"crashed with {describe_exit(rc)} during {phase}", **common)
    line = _first_error_line(stderr) or describe_exit(rc)
    return ChildResult("failed", f"{describe_exit(rc)} during {phase}: {line}", **common)


# A device with less than this left free at its fullest: a crash then is an allocation failure.
FULL_DEVICE_FREE_MB = 64.0


def gpu_was_full(gpu: GpuReading) -> bool:
    """The trial's GPU had (almost) nothing left at its fullest (NVML's device-wide reading)."""
    used, total = gpu.device_used_mb, gpu.device_total_mb
    return used is not None and total is not None and total - used < FULL_DEVICE_FREE_MB


def _oom_line(stderr: str) -> str:
    """The first line that says memory ran out (llama.cpp's, echoed by the child)."""
    for line in stderr.splitlines():
        if looks_oom(line):
            return line.strip()[:300]
    return _first_error_line(stderr)


def _first_error_line(stderr: str) -> str:
    for line in reversed(_tail(stderr, 50).splitlines()):
        s = line.strip()
        if s and not s.startswith(("File ", "Traceback", "^")):
            return s[:300]
    return ""
