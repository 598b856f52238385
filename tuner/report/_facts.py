"""What the report reads of the study itself: its rules (budget, floor, objectives), the
machine and model it ran on, and what an older study lacks. Plain values only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import optuna

from tuner.study import StudyRecord, display_url

TOK_S = "gen_tok_s"  # the throughput objective's name (tuner/study/_study.py)


class StudyFacts(NamedTuple):
    name: str
    storage: str  # display_url: the password masked
    budget_mb: float | None
    min_ctx: int | None  # the context floor; None in a study made before it
    latency: str  # cold | warm: which first-token latency is the second objective
    tok_s_index: int  # index of tok/s in trial.values
    gpu_offload: bool  # the build offloads and a GPU was present
    full_layers: int | None  # n_gpu_layers that puts the whole model on the GPU
    model_file: str | None
    model_path: str | None
    model_bytes: int | None
    bandwidth_gb_s: float | None  # the first GPU's memory bandwidth (NVML), where recorded
    n_trials: int


def _objective_names(study: optuna.Study, record: StudyRecord) -> list[str]:
    if record.objectives is not None:
        return record.objectives
    return [str(n) for n in (study.metric_names or [])]


def study_facts(study: optuna.Study, storage: str) -> StudyFacts:
    a = StudyRecord.from_study(study)
    settings: Mapping[str, Any] = a.settings or {}
    model: Mapping[str, Any] = a.model or {}
    gpus = a.gpus
    floor = (a.context_floor or {}).get("min_ctx", settings.get("min_ctx"))
    names = _objective_names(study, a)
    budget = settings.get("vram_budget_mb")
    layers = model.get("offloadable_layers")
    size = model.get("size_bytes")
    bw = gpus[0].get("bandwidth_gb_s") if gpus else None
    return StudyFacts(
        name=study.study_name,
        storage=display_url(storage),
        budget_mb=float(budget) if budget is not None else None,
        min_ctx=int(floor) if floor is not None else None,
        latency=str(settings.get("latency", "cold")),
        tok_s_index=names.index(TOK_S) if TOK_S in names else 0,
        gpu_offload=bool(gpus) and bool(a.gpu_offload),
        full_layers=int(layers) if layers is not None else None,
        model_file=model.get("file"),
        model_path=model.get("path"),
        model_bytes=int(size) if size is not None else None,
        bandwidth_gb_s=float(bw) if bw else None,
        n_trials=len(study.get_trials(deepcopy=False)),
    )


def _mb(v: Any) -> str:
    return f"{float(v):.0f} MB" if isinstance(v, (int, float)) else "?"


def provenance(study: optuna.Study, storage: str) -> list[tuple[str, str]]:
    """(what, value) lines: study, model, machine and build, as recorded by `dm-tune run`."""
    a = StudyRecord.from_study(study)
    model: Mapping[str, Any] = a.model or {}
    hw: Mapping[str, Any] = a.hardware or {}
    s: Mapping[str, Any] = a.settings or {}
    out = [("study", study.study_name), ("storage", display_url(storage))]
    if model:
        out += [
            ("model", str(model.get("file", "?"))),
            ("model path", str(model.get("path", "?"))),
            ("model size", f"{int(model.get('size_bytes', 0)) / 2**20:.0f} MiB"),
            ("sha256", str(model.get("sha256", "?"))),
            (
                "shape",
                f"{model.get('architecture', '?')}, {model.get('block_count', '?')} blocks, "
                f"{model.get('quantization', '?')}, trained context "
                f"{model.get('context_length', '?')}",
            ),
        ]
    if hw:
        out += [
            (
                "CPU",
                f"{hw.get('cpu', '?')} ({hw.get('physical_cores', '?')} cores, "
                f"{hw.get('logical_cores', '?')} threads)",
            ),
            ("RAM", _mb(hw.get("ram_mb"))),
            ("OS", str(hw.get("os", "?"))),
        ]
        for g in hw.get("gpus") or []:
            bw = g.get("bandwidth_gb_s")
            out.append(
                (
                    f"GPU {g.get('index', '')}".strip(),
                    f"{g.get('name', '?')}, {_mb(g.get('total_mb'))}, driver "
                    f"{g.get('driver', '?')}" + (f", {bw:.0f} GB/s" if bw else ""),
                )
            )
    if a.llama_cpp_version is not None:
        offload = a.gpu_offload
        build = "unknown" if offload is None else "offloads to a GPU" if offload else "CPU only"
        out.append(("llama-cpp-python", f"{a.llama_cpp_version} ({build})"))
    if s:
        out.append(
            (
                "study settings",
                f"VRAM budget {_mb(s.get('vram_budget_mb'))}, latency {s.get('latency', '?')}, "
                f"workload {s.get('workload_digest', '?')}, space {s.get('space_digest', '?')}",
            )
        )
    return out


def provenance_missing(study: optuna.Study) -> list[str]:
    a = StudyRecord.from_study(study)
    wanted = {
        "the model": a.model,
        "the machine": a.hardware,
        "the llama-cpp-python version": a.llama_cpp_version,
        "the study settings": a.settings,
    }
    return [what for what, value in wanted.items() if value is None]
