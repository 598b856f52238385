"""Check every input of a run before anything is written, and resolve it for this machine."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from objectives.launch import CHILD_ARGV, ColdLauncher
from objectives.nvml import list_gpus
from objectives.workload import Workload
from tuner.echo import Echo
from tuner.errors import UserError
from tuner.machine import (
    SMOKE_PARAMS,
    Hardware,
    Probe,
    detect,
    ensure_demo_model,
    run_probe,
    slugify,
    suggested_budget_mb,
)
from tuner.model_file import sha256_cached
from tuner.space import (
    ContextFloor,
    Machine,
    SearchSpace,
    SearchSpaceConfig,
    check_start_knobs,
    load_baselines,
    load_search_space_config,
    load_starts,
    parse_min_ctx,
    resolve,
    resolve_floor,
    starting_trials,
)
from tuner.study._heartbeat import heartbeat
from tuner.study._selection import PREFER_CHOICES
from tuner.study._settings import RunSettings
from tuner.study._storage import CheckedStorage, check_storage
from tuner.study._study_name import check_study_name
from tuner.vram import (
    GGUFInfo,
    VramGuard,
    free_vram_need_mb,
    predict_min_vram,
    predict_vram,
    read_gguf,
    reading_note,
)
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
    floor: ContextFloor
    vram_guard: VramGuard | None = None  # set where trials can use an NVIDIA GPU

    def workload_spec(self, n_ctx: int | None = None) -> dict[str, Any]:
        """What a trial child measures. A profile whose `n_ctx` is below the floor (one of the
        app's own, measured for the before/after table) gets the steady-state turn with only
        the last interactions that fit: the app itself would fail on the full one."""
        turns = None
        if n_ctx is not None and n_ctx < self.floor.min_ctx:
            turns = max(0, self.floor.turns_that_fit(n_ctx, self.workload.gen_tokens))
        return self.workload.spec(
            self.settings.repeats, turns=turns, next_turn=self.settings.latency == "warm"
        )

    def confirm_spec(self) -> dict[str, Any]:
        """The confirmation runs' workload: also the app's next turn and the early turn."""
        return self.workload.spec(self.settings.repeats, next_turn=True, early_turn=True)

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
            "min_ctx": self.floor.min_ctx,
            "workload_digest": settings_digest(self.workload_spec()),
            "space_digest": settings_digest(space),
        }

    def machine(self) -> dict[str, Any]:
        """The machine type a study measures: workers on identical machines join it, others
        are refused (their figures would not compare)."""
        gpus = self.hardware.gpus
        return {
            "gpus": [g.name for g in gpus],
            "driver": gpus[0].driver if gpus else None,
            "cpu": self.hardware.cpu,
            "logical_cores": self.hardware.logical_cores,
            "llama_cpp_version": self.probe.llama_cpp_version,
            "gpu_offload": self.probe.gpu_offload,
            "model_sha256": self.model_sha256,
        }


def describe_machine(m: dict[str, Any]) -> str:
    """A machine fingerprint in a few words (for the refusal line)."""
    gpus = " + ".join(str(g) for g in m.get("gpus") or []) or "no GPU"
    driver = f" driver {m['driver']}" if m.get("driver") else ""
    offload = "GPU" if m.get("gpu_offload") else "CPU-only"
    return (
        f"{gpus}{driver}, {m.get('cpu')} {m.get('logical_cores')} threads, "
        f"llama-cpp-python {m.get('llama_cpp_version')} {offload} build"
    )


MAX_TRIALS = 100_000


def settings_digest(obj: Any) -> str:
    """A short, stable digest of JSON-able settings (a study's workload and space digests)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def check_options(s: RunSettings) -> None:
    """The options alone (no file, model or machine read): checked before the measurement lock
    is taken, so a typo never waits for another run."""
    if not 1 <= s.trials <= MAX_TRIALS:
        raise UserError(f"--trials must be between 1 and {MAX_TRIALS} (got {s.trials})")
    if s.study_name is not None:
        check_study_name(s.study_name)
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
    parse_min_ctx(s.min_ctx)
    heartbeat()  # the environment's heartbeat timings, read again when the study opens


def prepare(s: RunSettings, echo: Echo = print) -> Context:
    """Validate options, config files, storage and model; probe the build. Writes nothing."""
    check_options(s)
    workload = load_model(s.workload, Workload)
    if s.latency == "warm" and workload.next_turn is None:
        raise UserError(f"--latency warm needs a next_turn in {s.workload}")
    space_cfg = load_search_space_config(s.search_space)
    baselines = load_baselines(s.baselines)
    storage = check_storage(s.storage)
    model_path = s.model if s.model is not None else ensure_demo_model()
    info = read_gguf(model_path)
    texts = _probe_texts(workload)
    echo(f"Checking llama-cpp-python on {info.path.name} ...")
    probe = run_probe(info.path, texts, launcher=ColdLauncher(s.child_argv or CHILD_ARGV))
    hardware = detect()
    floor = _floor(s, workload, probe, space_cfg.n_ctx.choices, info.context_length)
    machine = Machine(
        logical_cores=hardware.logical_cores,
        layers=info.offloadable_layers,
        gpu_offload=probe.gpu_offload,
        min_ctx=floor.min_ctx,
        trained_ctx=info.context_length,
    )
    space = resolve(space_cfg, machine)
    starts = _starts(s, space_cfg, space, baselines, probe)
    guard = _gpu_guard(s, info, probe, space, hardware, echo)
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
        floor=floor,
        vram_guard=guard,
    )


def _starts(
    s: RunSettings,
    space_cfg: SearchSpaceConfig,
    space: SearchSpace,
    baselines: dict[str, dict[str, Any]],
    probe: Probe,
) -> dict[str, dict[str, Any]]:
    """dm-tune's start points, checked with the baselines as the study will enqueue them."""
    starts = load_starts(s.baselines, gpu_offload=probe.gpu_offload)
    check_start_knobs(starts, set(type(space_cfg).model_fields))
    try:  # what the study enqueues first, so nothing fails once it exists
        starting_trials(space, baselines, starts)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(f"baselines file {s.baselines}: {exc}; fix the file") from None
    return starts


def _gpu_guard(
    s: RunSettings,
    info: GGUFInfo,
    probe: Probe,
    space: SearchSpace,
    hardware: Hardware,
    echo: Echo,
) -> VramGuard | None:
    """The VRAM guard where trials can offload to an NVIDIA GPU, with what the user should
    know about the GPU, its reading and the budget."""
    if hardware.gpus and not probe.gpu_offload:
        echo(
            f"warning: an NVIDIA GPU ({hardware.gpus[0].name}) is present but the installed "
            "llama-cpp-python cannot offload to it; every trial runs on the CPU. "
            "Run `dm-tune doctor` for the reinstall command."
        )
    note = reading_note(probe.gpu_offload, nvml_reads=probe.smoke_vram_mb is not None)
    if note is not None:
        echo(note)
    if not (hardware.gpus and probe.gpu_offload):
        return None
    guard = _vram_guard(info, probe, space, s.vram_budget_mb)
    free = sum(g.free_mb for g in list_gpus())
    if free and s.vram_budget_mb > free:
        echo(
            f"note: --vram-budget {s.vram_budget_mb:.0f} MB is more than the {free:.0f} MB "
            "free on this machine's GPU now; if this is the app's machine, its default tier "
            f"won't be selectable here: tune with --vram-budget {suggested_budget_mb(free)}MB "
            "(with the app's avatar running; docs/desktop-mate.md)"
        )
    return guard


def _probe_texts(w: Workload) -> list[str]:
    """What the probe tokenizes, in this order: the measured prompt, the next turn's, the
    early turn's, the worst-case skeleton, then the measured prompt with 0..turns_kept
    interactions (a profile below the floor carries as many as fit)."""
    head = [w.prompt(), w.next_prompt() or "", w.early_prompt() or "", w.worst_case_skeleton()]
    return head + [w.prompt(k) for k in range(w.app.turns_kept + 1)]


def _floor(
    s: RunSettings, w: Workload, probe: Probe, choices: tuple[int, ...], trained: int | None
) -> ContextFloor:
    n = probe.n_tokens  # in _probe_texts' order
    steady_prompt = max(n[0], n[1] if w.next_turn else 0)
    longest_measured = max(n[0], n[1], n[2]) + w.gen_tokens
    floor = resolve_floor(
        parse_min_ctx(s.min_ctx),
        turns_kept=w.app.turns_kept,
        max_tokens=w.app.max_tokens,
        steady_prompt_tokens=steady_prompt,
        worst_skeleton_tokens=n[3],
        prompt_tokens_by_turns=n[4:],
        choices=choices,
        trained_ctx=trained,
    )
    if longest_measured > floor.min_ctx:  # gen_tokens above the app's max_tokens
        raise UserError(
            f"the workload generates {w.gen_tokens} tokens per answer, more than fits the context "
            f"floor {floor.min_ctx} after its {max(n[0], n[1], n[2])}-token prompt; lower "
            "gen_tokens in the workload"
        )
    return floor


def _vram_guard(info: GGUFInfo, probe: Probe, space: SearchSpace, budget_mb: float) -> VramGuard:
    """Overhead measured by the probe's no-offload load; refuse a budget nothing can meet."""
    base = predict_vram(info, SMOKE_PARAMS, 0.0).total_mb
    overhead = max(0.0, (probe.smoke_vram_mb or 0.0) - base)
    least = predict_min_vram(info, space.n_ctx_choices, overhead)
    need = free_vram_need_mb(least.total_mb)
    if need > budget_mb:
        raise UserError(
            f"no setting fits a VRAM budget of {budget_mb:.0f} MB: with no layer on the GPU this "
            f"build still uses about {least.total_mb:.0f} MB (measured CUDA context and buffers), "
            f"so its profile tier would ask for {need:.0f} MB free; raise --vram-budget, or "
            "install a CPU-only llama-cpp-python to tune CPU settings"
        )
    return VramGuard(info=info, budget_mb=budget_mb, overhead_mb=overhead)
