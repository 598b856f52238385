"""The trial child: `python -m objectives.child SPEC.json RESULT.json`, or `... --wait`.

Runs in a fresh (spawned) interpreter so a crash, a hang or leaked VRAM cannot hurt the study.
Writes a JSON result; a native crash writes nothing, and the parent reads the exit code instead.

With `--wait` (a pre-warmed child, objectives.launch) it imports llama_cpp and discovers its
devices first, says `dm-tune-phase: ready`, then reads `{"spec": ..., "result": ...}` from
stdin; after the model load it says `dm-tune-phase: loaded` and waits for a `go` line before
measuring. An empty line or end of input before the spec: exit quietly (the pool was closed).
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from objectives import phases
from objectives.lifeline import die_with_parent
from objectives.llama_log import FAILURE_TAIL_CHARS, LogCapture, looks_oom
from objectives.llama_params import to_llama_kwargs
from objectives.measure import measure
from objectives.metrics import TrialMetrics
from objectives.phases import phase


def peak_rss_mb() -> float:
    """Peak resident set size of this process (exact on Linux/macOS/Windows)."""
    import psutil

    info = psutil.Process().memory_info()
    peak = getattr(info, "peak_wset", None)  # Windows
    if peak is None:
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = ru if sys.platform == "darwin" else ru * 1024
    return float(peak) / 2**20


def _process_start() -> float:
    """When this interpreter was started (wall clock), for the per-trial start-up overhead."""
    import psutil

    return float(psutil.Process().create_time())


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def _failure(exc: Exception, log: LogCapture, kind: str, info: dict[str, Any]) -> dict[str, Any]:
    """A Python-level failure as a result the parent can classify (OOM text wins)."""
    text = f"{exc}\n{log.text()[-FAILURE_TAIL_CHARS:]}\n{traceback.format_exc()}"
    return {
        "ok": False,
        "kind": "oom" if looks_oom(text) else kind,
        "error": f"{type(exc).__name__}: {exc}",
        "log": text,
        **info,
    }


def _prepare() -> None:
    """Everything a trial needs before it knows its settings: imports and device discovery."""
    phase(phases.IMPORT)
    import llama_cpp

    llama_cpp.llama_supports_gpu_offload()  # the backend registry: finds the GPUs, no allocation


def _no_gate() -> None:
    return None


def run(
    spec: dict[str, Any],
    *,
    t_start: float | None = None,
    gate: Callable[[], None] = _no_gate,
    extra: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Load the model with the spec's settings, wait for `gate`, measure; the result dict.

    `t_start` (wall clock) is where the trial's start-up overhead counts from: the process start,
    or for a pre-warmed child the moment its spec arrived."""
    if t_start is None:  # started with its spec: prepare now (a pre-warmed child already has)
        t_start = _process_start()
        _prepare()
    import llama_cpp

    log = LogCapture()
    log.install()
    info: dict[str, Any] = {
        "llama_cpp_version": llama_cpp.__version__,
        "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
    }
    if spec.get("probe"):
        from objectives.probe import probe

        return probe(spec)
    phase(phases.LOAD)
    startup_s = time.time() - t_start
    t0 = time.perf_counter()
    try:
        llm = llama_cpp.Llama(
            model_path=spec["model_path"], **to_llama_kwargs(spec["params"]), verbose=False
        )
    except Exception as exc:
        return _failure(exc, log, "load_failed", info)
    load_s = time.perf_counter() - t0
    phase(phases.LOADED)
    gate()
    try:
        samples, n_prompt, n_gen = measure(llm, spec)
    except Exception as exc:
        return _failure(exc, log, "exception", info)
    metrics = TrialMetrics.from_samples(
        samples,
        load_s=load_s,
        peak_rss_mb=peak_rss_mb(),
        n_prompt_tokens=n_prompt,
        n_generated=n_gen,
        history_turns=spec["workload"].get("history_turns"),
    )
    metrics = replace(metrics, extra={"startup_s": round(startup_s, 3), **(extra or {})})
    phase(phases.DONE)
    return {"ok": True, "metrics": metrics.to_dict(), "llama_log": log.relevant(), **info}


def _read_go() -> None:
    sys.stdin.readline()  # "go" (or end of input: the parent is gone, measuring is harmless)


def _wait_mode() -> int:
    """Pre-warmed: prepare, say ready, then run the spec the parent sends on stdin."""
    _prepare()
    t_ready = time.time()
    phase(phases.READY)
    line = sys.stdin.readline().strip()
    if not line:
        return 0
    t_spec = time.time()
    paths = json.loads(line)
    spec = json.loads(Path(paths["spec"]).read_text(encoding="utf-8"))
    extra = {
        "prewarm_s": round(t_ready - _process_start(), 3),  # off the critical path
        "idle_s": round(t_spec - t_ready, 3),
    }
    result = run(spec, t_start=t_spec, gate=_read_go, extra=extra)
    _write(Path(paths["result"]), result)
    return 0 if result.get("ok") else 1


def main(argv: list[str]) -> int:
    die_with_parent()  # a killed `dm-tune run` leaves no trial running
    faulthandler.enable()  # a native crash still prints where Python was
    if argv == ["--wait"]:
        return _wait_mode()
    spec_path, result_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    result = run(spec)
    _write(result_path, result)
    return 0 if result.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
