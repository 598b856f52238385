"""Check every input of a run before anything is written, and resolve it for this machine."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from objectives.workload import Workload
from tuner.baselines import check_start_knobs, load_baselines, load_starts
from tuner.demo_model import ensure_demo_model
from tuner.errors import UserError
from tuner.gguf_info import GGUFInfo, read_gguf
from tuner.hardware import Hardware, detect, slugify
from tuner.model_file import sha256_cached
from tuner.probe import SMOKE_PARAMS, Probe, run_probe
from tuner.search_space import Machine, SearchSpace, load_search_space_config, resolve
from tuner.selection import PREFER_CHOICES
from tuner.settings import RunSettings
from tuner.storage import CheckedStorage, check_storage
from tuner.vram_guard import VramGuard
from tuner.vram_predict import predict_min_vram, predict_vram
from tuner.yaml_io import load_model


@dataclass(frozen=True)
class Context:
    """A run's inputs, validated and fitted to the machine and model."""

    settings: RunSettings
    model: GGUFInfo
    model_sha256: str
    workload: Workload
    space: SearchSpace
    baselines: dict[str, dict[str, Any]]
    starts: dict[str, dict[str, Any]]
    hardware: Hardware
    probe: Probe
    storage: CheckedStorage
    study_name: str
    vram_guard: VramGuard | None = None  # set where trials can use an NVIDIA GPU

    @property
    def gpu_active(self) -> bool:
        """Trials can put work on an NVIDIA GPU (one is present and the build offloads)."""
        return bool(self.hardware.gpus) and self.probe.gpu_offload

    def workload_spec(self) -> dict[str, Any]:
        return self.workload.spec(self.settings.repeats)

    def fingerprint(self) -> dict[str, Any]:
        """What must not change for a study to be resumed: results stay comparable."""
        space = {
            "config": self.space.config.model_dump(mode="json"),
            "n_ctx": list(self.space.n_ctx_choices),
            "layers": self.space.machine.layers,
            "cores": self.space.machine.logical_cores,
            "gpu_offload": self.space.machine.gpu_offload,
        }
        return {
            "model_sha256": self.model_sha256,
            "vram_budget_mb": self.settings.vram_budget_mb,
            "latency": self.settings.latency,
            "workload_digest": _digest(self.workload_spec()),
            "space_digest": _digest(space),
        }


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _check_options(s: RunSettings) -> None:
    if s.trials < 1:
        raise UserError(f"--trials must be at least 1 (got {s.trials})")
    if s.trial_timeout_s <= 0:
        raise UserError("--trial-timeout must be above zero seconds")
    if s.latency not in ("cold", "warm"):
        raise UserError(f"--latency must be cold or warm (got {s.latency!r})")
    if s.prefer not in PREFER_CHOICES:
        raise UserError(f"--prefer must be one of {', '.join(PREFER_CHOICES)} (got {s.prefer!r})")
    if s.repeats is not None and s.repeats < 1:
        raise UserError("--repeats must be at least 1")
    if s.confirm_k < 0 or s.confirm_runs < 1:
        raise UserError("--confirm must be 0 or more and --confirm-runs at least 1")
    if s.vram_budget_mb <= 0:
        raise UserError("--vram-budget must be above zero")


def prepare(s: RunSettings, echo: Any = print) -> Context:
    """Validate options, config files, storage and model; probe the build. Writes nothing."""
    _check_options(s)
    workload = load_model(s.workload, Workload)
    if s.latency == "warm" and workload.next_turn is None:
        raise UserError(f"--latency warm needs a next_turn in {s.workload}")
    space_cfg = load_search_space_config(s.search_space)
    baselines = load_baselines(s.baselines)
    storage = check_storage(s.storage)
    model_path = s.model if s.model is not None else ensure_demo_model()
    info = read_gguf(model_path)
    texts = [workload.prompt()] + ([workload.next_prompt() or ""] if workload.next_turn else [])
    echo(f"Checking llama-cpp-python on {info.path.name} ...")
    probe = run_probe(info.path, texts, argv=list(s.child_argv) if s.child_argv else None)
    hardware = detect()
    min_ctx = max(probe.n_tokens) + workload.max_tokens
    machine = Machine(
        logical_cores=hardware.logical_cores,
        layers=info.offloadable_layers,
        gpu_offload=probe.gpu_offload,
        min_ctx=min_ctx,
        trained_ctx=info.context_length,
    )
    space = resolve(space_cfg, machine)
    starts = load_starts(s.baselines, gpu_offload=probe.gpu_offload)
    check_start_knobs(starts, set(type(space_cfg).model_fields))
    if hardware.gpus and not probe.gpu_offload:
        echo(
            f"warning: an NVIDIA GPU ({hardware.gpus[0].name}) is present but the installed "
            "llama-cpp-python cannot offload to it; every trial runs on the CPU. "
            "Run `dm-tune doctor` for the reinstall command."
        )
    guard = None
    if hardware.gpus and probe.gpu_offload:
        guard = _vram_guard(info, probe, space, s.vram_budget_mb)
    sha = sha256_cached(info.path)
    name = s.study_name or slugify(f"{info.path.stem}-{hardware.slug()}", max_len=96)
    return Context(
        settings=s,
        model=info,
        model_sha256=sha,
        workload=workload,
        space=space,
        baselines=baselines,
        starts=starts,
        hardware=hardware,
        probe=probe,
        storage=storage,
        study_name=name,
        vram_guard=guard,
    )


def _vram_guard(info: GGUFInfo, probe: Probe, space: SearchSpace, budget_mb: float) -> VramGuard:
    """Overhead measured by the probe's no-offload load; refuse a budget nothing can meet."""
    base = predict_vram(info, SMOKE_PARAMS, 0.0).total_mb
    overhead = max(0.0, (probe.smoke_vram_mb or 0.0) - base)
    least = predict_min_vram(info, space.n_ctx_choices, overhead)
    if least.total_mb > budget_mb:
        raise UserError(
            f"no setting fits a VRAM budget of {budget_mb:.0f} MB: with no layer on the GPU this "
            f"build still needs about {least.total_mb:.0f} MB (measured CUDA context and buffers); "
            "raise --vram-budget, or install a CPU-only llama-cpp-python to tune CPU settings"
        )
    return VramGuard(info=info, budget_mb=budget_mb, overhead_mb=overhead)
