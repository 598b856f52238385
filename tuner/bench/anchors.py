"""Anchors for issue 11: dm-tune's exported profile against what a user would run instead.

Three subcommands, run in this order on the GPU machine (the lead's script calls them):

    python3 scripts/anchors.py plan --model M --profile P.yaml --fit-answer "@fit.txt" \\
        --free-mib 5544 --total-mib 6144 --floor 4096 [--sweep] --out plan.json
    python3 scripts/anchors.py measure --plan plan.json --model M --storage URL [--study NAME] \\
        --runs 3 --out results.json [--deadline-s N]
    python3 scripts/anchors.py table --results results.json [--results2 r2.json] \\
        --study-wall-s S --out fit_table.md

The settings a plan holds (group in brackets):
- [dm-tune] the exported profile's default tier, as the app loads it.
- [fit] `llama-fit-params --model M -c 4096` prints `-c 4096 -ngl 18` (tools/fit-params in the
  vendored llama.cpp of llama-cpp-python 0.3.36). Read there: common/common.h, fit_params on,
  fit_params_target 1024 MiB per device (`-fitt`), fit_params_min_ctx 4096 (`-fitc`); with `-c`
  given, common/fit.cpp leaves n_ctx alone ("context size set by user") and fits only the
  layers. `-ts`/`-ot` in the answer (several GPUs, MoE overrides) are kept in the plan's note
  but not applied: llama-cpp-python's kwargs here don't carry them.
  `fit+cli-defaults` is what `llama-server --fit` gives: that ngl and n_ctx with the CLI's own
  defaults (common/common.h: n_batch 2048, n_ubatch 512, flash_attn_type AUTO, which is on with
  CUDA, use_mlock false, F16 KV cache; n_threads -1 -> common_cpu_get_num_math(), and
  n_threads_batch the same, see `llama_cpp_default_threads`). `fit+app` is fit's ngl with the
  app's `performance` profile at the floor; `fit+dm-tune` fit's ngl with the dm-tune tier's other
  knobs.
- [ollama] `ollama_choice`: Ollama's rule computed from its source (see there).
- [app] Desktop-Mate's profiles (configs/baselines.yaml), normalized as the study enqueues them
  (tuner.space.SearchSpace.fit_baseline: -1/35 -> every layer, threads capped at the
  logical cores, llama.cpp's defaults made explicit); one whose n_ctx is below the floor runs
  as the app runs it and is marked `below_floor`.
- [sweep] (`--sweep`) the ground truth around both answers: n_gpu_layers at dm-tune's and fit's
  choice +-2, +-4 (clipped to 0..layers, de-duplicated) x 3 thread counts, flash attention on, at
  the floor, other knobs from the dm-tune tier. `--sweep-shape cross` measures the layers at
  dm-tune's thread count and the other thread counts at dm-tune's layers only (8 settings
  instead of 18 on the 13B-class model: what fits in a GPU go's device time).

`measure` runs every setting in fresh processes (objectives.launch.ColdLauncher), interleaved: pass
1 runs each setting once in an order shuffled with a fixed seed, then pass 2, ...; results.json
is rewritten (atomically) after every run, so a cut run keeps what it measured. `table` computes
rows and the issue's targets (`table_rows`, `targets`) apart from the markdown (`render`).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import psutil

from tuner.errors import UserError
from tuner.paths import default_config
from tuner.space import (
    Machine,
    SearchSpace,
    SearchSpaceConfig,
    load_baselines,
    load_search_space_config,
    resolve,
)
from tuner.vram import GGUFInfo, read_gguf
from tuner.yaml_io import write_atomic

if TYPE_CHECKING:
    from objectives.launch import Launcher

MIB = 1 << 20
GIB = 1 << 30
PLAN_VERSION = 1
RESULTS_VERSION = 1
DEFAULT_BASELINES = default_config("baselines.yaml")
DEFAULT_SPACE = default_config("search_space.yaml")
SEED = 11

# --- Ollama ----
# Constants read in ollama/ollama (see ollama_choice's docstring for files and versions).
OLLAMA_CUDA_MINIMUM_MEMORY = 457 * MIB  # discover/gpu.go: cudaMinimumMemory
OLLAMA_GPU_OVERHEAD = 0  # envconfig: OLLAMA_GPU_OVERHEAD, default 0 bytes
OLLAMA_NUM_BATCH = 512  # api/types.go DefaultOptions: NumBatch
OLLAMA_FLASH_ATTN_ARCHS = frozenset(  # fs/ggml/ggml.go GGML.FlashAttention(): on by default
    {
        "bert", "gemma3", "gemma4", "glm4moelite", "glmocr", "gptoss", "gpt-oss", "lfm2",
        "lfm2moe", "mistral3", "nemotron_h", "nemotron_h_moe", "nemotron_h_omni", "olmo3",
        "qwen3", "qwen3moe", "qwen35", "qwen35moe", "qwen3next", "qwen3vl", "qwen3vlmoe",
    }
)  # fmt: skip


def ollama_default_num_ctx(total_mib: float, overhead_bytes: int = OLLAMA_GPU_OVERHEAD) -> int:
    """server/routes.go (Serve): the default num_ctx from the GPUs' total memory, less the
    overhead, with thresholds one GiB below the documented 24/48 GiB."""
    total = total_mib * MIB - overhead_bytes
    if total >= 47 * GIB:
        return 262144
    if total >= 23 * GIB:
        return 32768
    return 4096


class OllamaSizes(NamedTuple):
    """fs/ggml/ggml.go GraphSize for a llama-architecture model, bytes."""

    kv: int  # the whole KV cache at num_ctx (f16)
    graph_partial: int
    graph_full: int
    layer_bytes: tuple[int, ...]  # blk.i tensors
    output_bytes: int  # output_norm + output (or token_embd when output is tied)


def _group_bytes(info: GGUFInfo) -> dict[str, int]:
    """Tensor bytes per group, as ggml's GroupLayers names them (blk.N, output, token_embd...)."""
    out: dict[str, int] = {}
    for t in info.tensors:
        parts = t.name.split(".")
        key = ".".join(parts[:2]) if parts[0] == "blk" else parts[0]
        out[key] = out.get(key, 0) + t.n_bytes
    return out


def ollama_sizes(info: GGUFInfo, num_ctx: int, num_batch: int) -> OllamaSizes:
    """The estimate's inputs: per-block weights, output layer, KV cache and the two graph sizes."""
    emb = info.embedding_length or 0
    heads = info.head_count or 1
    heads_kv = info.head_count_kv or heads
    head_k = info.key_length or emb // heads
    head_v = info.value_length or emb // heads
    vocab = info.vocab_size or 0
    context, batch = num_ctx, min(num_ctx, num_batch)
    kv = context * info.block_count * (head_k + head_v) * heads_kv * 2  # f16: 2 bytes
    full = max(4 * batch * (1 + 4 * emb + context * (1 + heads)), 4 * batch * (emb + vocab))
    partial = 4 * batch * emb + max(
        4 * batch * (1 + emb + max(context, emb))
        + emb * emb * 9 // 16
        + 4 * context * (batch * heads + head_k * heads_kv),
        4 * batch * (emb + vocab) + emb * vocab * 105 // 128,
    )
    groups = _group_bytes(info)
    layers = tuple(groups.get(f"blk.{i}", 0) for i in range(info.block_count))
    output = groups.get("output_norm", 0) + groups.get("output", groups.get("token_embd", 0))
    return OllamaSizes(kv, partial or kv // 6, full or partial, layers, output)


def ollama_layers(
    sizes: OllamaSizes,
    free_bytes: float,
    *,
    minimum: int = OLLAMA_CUDA_MINIMUM_MEMORY,
    overhead: int = OLLAMA_GPU_OVERHEAD,
) -> tuple[int, int]:
    """llm/memory.go EstimateGPULayers for one CUDA GPU: (layers offloaded, bytes it plans).

    A GPU takes layers only if it holds the reserve (overhead + minimum memory), the larger graph
    and two layers; then blocks are added while each fits next to the graph, then the output
    layer. num_gpu counts the output layer as one layer, as llama.cpp's n_gpu_layers does."""
    n_blocks = len(sizes.layer_bytes)
    kv_per_layer = sizes.kv // n_blocks if n_blocks else 0
    first = (sizes.layer_bytes[0] if sizes.layer_bytes else 0) + kv_per_layer
    graph = max(sizes.graph_partial, sizes.graph_full)
    if free_bytes < overhead + graph + minimum + 2 * first:
        return 0, 0
    used = minimum + first  # "a buffer": one layer's worth, held off the count
    count = 0
    for blk in sizes.layer_bytes:
        layer = blk + kv_per_layer
        if free_bytes > overhead + used + graph + layer:
            used += layer
            count += 1
        else:
            break  # the GPU leaves the list: no later layer goes there
    else:
        if sizes.output_bytes and free_bytes > overhead + used + graph + sizes.output_bytes:
            used += sizes.output_bytes
            count += 1
    full = count >= n_blocks + 1
    return count, used + (sizes.graph_full if full else sizes.graph_partial)


def physical_cores() -> int:
    """Physical cores, as psutil counts them (Linux: distinct core ids in /sys topology)."""
    n = psutil.cpu_count(logical=False)
    if n:
        return int(n)
    logical = psutil.cpu_count(logical=True) or 4
    return logical if logical <= 4 else logical // 2


def llama_cpp_default_threads() -> int:
    """common/common.cpp common_cpu_get_num_math() (llama.cpp vendored in llama-cpp-python
    0.3.36), the n_threads of its CLI tools when -t is not given.

    On Linux x86_64 it returns common_cpu_get_num_physical_cores(): the number of distinct
    /sys/devices/system/cpu/cpuN/topology/thread_siblings sets, i.e. one per physical core
    (hyper-threads excluded); on a hybrid Intel CPU it first counts the performance cores by
    pinning a thread to each CPU and reading cpuid leaf 0x1a, which Python can't do: counted as
    physical cores here (not seen on this project's machines). Elsewhere with no topology:
    hardware_concurrency, halved above 4."""
    return physical_cores()


def ollama_choice(
    gguf_path: Path | str, free_mib: float, total_mib: float, n_ctx_floor: int
) -> dict[str, Any]:
    """What Ollama would load this GGUF with on a GPU with `free_mib` free of `total_mib`:
    llama-cpp-python kwargs plus `why` (one line).

    Followed (ollama/ollama as stored by the project's code index):
    - server/routes.go, Serve(): default num_ctx from the GPUs' total memory minus
      OLLAMA_GPU_OVERHEAD: >= 47 GiB 262144, >= 23 GiB 32768, else 4096 (v0.33.2 lines
      2046-2058 per a third-party write-up; the docs' context-length page says < 24 GiB: 4k,
      24-48: 32k, >= 48: 256k). llm/server.go caps num_ctx at the model's trained context.
    - discover/gpu.go: cudaMinimumMemory = 457 MiB, the per-GPU reserve; envconfig
      OLLAMA_GPU_OVERHEAD (default 0) on top.
    - llm/memory.go EstimateGPULayers (commit 3241b457904a91c709b4c77075a50917fab43aaa, the
      version with GpuOverhead and KV cache types): per layer = blk.i tensor bytes + KV cache /
      block_count; graph = fs/ggml/ggml.go GraphSize for llama (partial and full offload, batch =
      min(num_ctx, num_batch)); layers while each fits (see ollama_layers).
    - api/types.go DefaultOptions: num_batch 512, num_gpu -1 (auto); the llama runner sets
      n_ubatch = num_batch with one parallel slot. num_thread 0: the runner uses the physical
      (performance) core count. fs/ggml/ggml.go GGML.FlashAttention(): flash attention on by
      default only for the architectures in OLLAMA_FLASH_ATTN_ARCHS ("llama" is not one);
      OLLAMA_KV_CACHE_TYPE applies only with flash attention: KV cache f16. use_mlock false.
    Simplified: one GPU, no projector, OLLAMA_NUM_PARALLEL 1, no env overrides, the llama-runner
    estimate (newer versions' Ollama engine measures a trial allocation instead of this
    estimate; models of the llama architecture in GGUF files of other tools run on either).
    The app's floor: a default below it is raised to it (a Desktop-Mate user sets num_ctx)."""
    info = read_gguf(Path(gguf_path))
    default_ctx = ollama_default_num_ctx(total_mib)
    num_ctx, why = default_ctx, [f"default num_ctx {default_ctx} for {total_mib:.0f} MiB total"]
    if info.context_length and num_ctx > info.context_length:
        num_ctx = info.context_length
        why.append(f"capped at the trained context {num_ctx}")
    if num_ctx < n_ctx_floor:
        num_ctx = n_ctx_floor
        why.append(f"raised to the app's floor {n_ctx_floor} (a user sets num_ctx)")
    sizes = ollama_sizes(info, num_ctx, OLLAMA_NUM_BATCH)
    layers, planned = ollama_layers(sizes, free_mib * MIB)
    why.append(
        f"{layers}/{info.offloadable_layers} layers fit {free_mib:.0f} MiB free "
        f"(reserve {OLLAMA_CUDA_MINIMUM_MEMORY // MIB} MiB, KV {sizes.kv / MIB:.0f} MiB, "
        f"graph {max(sizes.graph_partial, sizes.graph_full) / MIB:.0f} MiB, "
        f"plans {planned / MIB:.0f} MiB)"
    )
    flash = info.architecture in OLLAMA_FLASH_ATTN_ARCHS
    batch = min(num_ctx, OLLAMA_NUM_BATCH)
    threads = physical_cores()
    return {
        "n_gpu_layers": layers,
        "n_ctx": num_ctx,
        "n_batch": batch,
        "n_ubatch": batch,
        "n_threads": threads,
        "n_threads_batch": threads,
        "flash_attn": flash,
        "use_mlock": False,
        "why": "; ".join(why),
    }


# --- llama.cpp's fit ----
_FIT_RE = re.compile(r"(?:^|\s)-c\s+(\d+)\s+-ngl\s+(-?\d+)((?:\s+\S.*)?)$")


def parse_fit_answer(text: str) -> dict[str, Any]:
    """`llama-fit-params ... -c 4096` output -> {"n_ctx", "n_gpu_layers", "extra"}.

    The answer is the last line of the form `-c N -ngl K [-ts ...] [-ot "..."]` (log lines
    before it are ignored); anything else is a UserError naming what was expected."""
    for line in reversed(text.strip().splitlines()):
        m = _FIT_RE.search(line.strip())
        if m:
            extra = m.group(3).strip()
            try:
                extra_args = shlex.split(extra)
            except ValueError:
                extra_args = [extra]
            return {"n_ctx": int(m.group(1)), "n_gpu_layers": int(m.group(2)), "extra": extra_args}
    shown = text.strip().splitlines()[-1][:80] if text.strip() else "nothing"
    raise UserError(
        f"--fit-answer: no '-c N -ngl K' line in llama-fit-params' answer (got {shown!r}); "
        'pass its stdout, e.g. --fit-answer "-c 4096 -ngl 18" or --fit-answer @fit.txt'
    )


def _read_fit_answer(arg: str) -> str:
    if arg.startswith("@"):
        path = Path(arg[1:])
        try:
            return path.read_text(encoding="utf-8")
        except OSError as e:
            raise UserError(f"--fit-answer: cannot read {path}: {e.strerror or e}") from None
    return arg


# --- the plan ----
class Cores(NamedTuple):
    logical: int
    physical: int


def detect_cores() -> Cores:
    return Cores(psutil.cpu_count(logical=True) or 1, physical_cores())


def _space(info: GGUFInfo, floor: int, cores: Cores, space_path: Path | None) -> SearchSpace:
    """The study's space on a GPU build (the plan is for the GPU machine)."""
    cfg = load_search_space_config(space_path) if space_path else SearchSpaceConfig()
    machine = Machine(
        logical_cores=cores.logical,
        layers=info.offloadable_layers,
        gpu_offload=True,
        min_ctx=floor,
        trained_ctx=info.context_length,
    )
    try:
        return resolve(cfg, machine)
    except UserError as e:
        raise UserError(f"search space does not fit this model and floor: {e}") from None


def _entry(name: str, group: str, llama: dict[str, Any], note: str, floor: int) -> dict[str, Any]:
    below = int(llama["n_ctx"]) < floor
    return {"name": name, "group": group, "llama": llama, "note": note, "below_floor": below}


def sweep_layers(centres: Sequence[int], n_layers: int, span: int = 4, step: int = 2) -> list[int]:
    """Each centre +-span in `step`s, clipped to 0..n_layers, de-duplicated, ascending."""
    out = {min(max(c + d, 0), n_layers) for c in centres for d in range(-span, span + 1, step)}
    return sorted(out)


def sweep_threads(dmtune: int, cores: Cores) -> list[int]:
    """dm-tune's count, one per physical core on an SMT host (logical // 2: llama.cpp's and
    Ollama's rule) and every logical core (llama-cpp-python's n_threads_batch default);
    de-duplicated in that order."""
    out: list[int] = []
    for t in (dmtune, max(1, cores.logical // 2), cores.logical):
        if t not in out:
            out.append(t)
    return out


SWEEP_SHAPES = ("grid", "cross")


def sweep_points(
    layers: Sequence[int], threads: Sequence[int], centre: tuple[int, int], shape: str
) -> list[tuple[int, int]]:
    """(n_gpu_layers, n_threads) pairs: every pair (`grid`), or the layers at the centre's
    threads and the threads at the centre's layers (`cross`)."""
    if shape == "grid":
        return [(ngl, t) for ngl in layers for t in threads]
    if shape != "cross":
        raise UserError(f"--sweep-shape must be one of {', '.join(SWEEP_SHAPES)} (got {shape!r})")
    ngl0, t0 = centre
    out = [(ngl, t0) for ngl in layers]
    out += [(ngl0, t) for t in threads if (ngl0, t) not in out]
    return out


def _dm_tune_tier(profile_path: Path) -> tuple[str, dict[str, Any]]:
    """The profile's default tier: its name and its llama kwargs."""
    from tuner.profile import ProfileError, load_profile

    try:
        profile = load_profile(profile_path)
    except ProfileError as e:
        raise UserError(str(e)) from None
    tier = profile.tier(profile.default_tier)
    return tier.name, tier.llama.kwargs()


def _fit_cli_entry(fit: dict[str, Any], fit_ngl: int, extra: str, floor: int) -> dict[str, Any]:
    """What `llama-server --fit` runs: fit's -c/-ngl with the CLI's defaults."""
    cli_threads = llama_cpp_default_threads()
    return _entry(
        "fit+cli-defaults",
        "fit",
        {
            "n_gpu_layers": fit_ngl,
            "n_ctx": fit["n_ctx"],
            "n_batch": 2048,
            "n_ubatch": 512,
            "n_threads": cli_threads,
            "n_threads_batch": cli_threads,
            "flash_attn": True,
            "use_mlock": False,
        },
        "llama-server --fit: fit's -c/-ngl, CLI defaults (batch 2048/512, flash auto = on "
        f"with CUDA, {cli_threads} threads = physical cores){extra}",
        floor,
    )


def _fit_with_entries(
    app: dict[str, Any],
    space: SearchSpace,
    dm: dict[str, Any],
    fit_ngl: int,
    extra: str,
    floor: int,
) -> list[dict[str, Any]]:
    """fit's layer count with the other knobs of the app's performance profile (if it has
    one), then with the dm-tune tier's."""
    out = []
    if "performance" in app:
        perf: dict[str, Any] = dict(app["performance"])
        perf.update(n_gpu_layers=fit_ngl, n_ctx=max(int(perf["n_ctx"]), floor))
        out.append(
            _entry(
                "fit+app",
                "fit",
                space.fit_baseline(perf),
                f"fit's ngl {fit_ngl} with the app's performance profile at the floor{extra}",
                floor,
            )
        )
    out.append(
        _entry(
            "fit+dm-tune",
            "fit",
            {**dm, "n_gpu_layers": fit_ngl},
            f"fit's ngl {fit_ngl} with the dm-tune tier's other knobs{extra}",
            floor,
        )
    )
    return out


def _app_entries(app: dict[str, Any], space: SearchSpace, floor: int) -> list[dict[str, Any]]:
    """Desktop-Mate's own profiles, as the study enqueues them."""
    out = []
    for name, prof in app.items():
        llama = space.fit_baseline(dict(prof))
        low = int(llama["n_ctx"]) < floor
        note = f"Desktop-Mate's {name} profile, normalized as the study enqueues it"
        if low:
            note += f"; n_ctx {llama['n_ctx']} below the floor {floor}: run as the app runs it"
        out.append(_entry(f"app:{name}", "app", llama, note, floor))
    return out


def _sweep_entries(
    space: SearchSpace,
    dm: dict[str, Any],
    centres: tuple[int, int],  # the dm-tune tier's and fit's layer counts
    n_layers: int,
    cores: Cores,
    sweep_shape: str,
    floor: int,
) -> list[dict[str, Any]]:
    """The ground-truth sweep over layers and threads around the dm-tune tier."""
    dm_ngl = centres[0]
    base = {**dm, "flash_attn": True, "n_ctx": max(int(dm["n_ctx"]), floor)}
    out = []
    for ngl, t in sweep_points(
        sweep_layers(centres, n_layers),
        sweep_threads(int(dm["n_threads"]), cores),
        (dm_ngl, int(dm["n_threads"])),
        sweep_shape,
    ):
        llama = space.normalize({**base, "n_gpu_layers": ngl, "n_threads": t})
        out.append(_entry(f"sweep:ngl{ngl}:t{t}", "sweep", llama, "ground-truth sweep", floor))
    return out


def build_plan(
    model: Path,
    profile_path: Path,
    fit_text: str,
    *,
    free_mib: float,
    total_mib: float,
    floor: int,
    sweep: bool,
    sweep_shape: str = "grid",
    cores: Cores | None = None,
    baselines: Path | None = DEFAULT_BASELINES,
    space_path: Path | None = DEFAULT_SPACE,
) -> dict[str, Any]:
    """Every setting to measure, named and grouped (see the module docstring)."""
    fit = parse_fit_answer(fit_text)
    info = read_gguf(model)
    cores = cores or detect_cores()
    tier_name, dm = _dm_tune_tier(profile_path)
    space = _space(info, floor, cores, space_path)
    n_layers = info.offloadable_layers
    fit_ngl = space.normalize({"n_gpu_layers": fit["n_gpu_layers"]})["n_gpu_layers"]
    dm_ngl = space.normalize({"n_gpu_layers": dm["n_gpu_layers"]})["n_gpu_layers"]
    extra = f"; not applied: {' '.join(fit['extra'])}" if fit["extra"] else ""
    settings = [
        _entry(
            "dm-tune",
            "dm-tune",
            dm,
            f"profile {profile_path.name}, default tier {tier_name}",
            floor,
        ),
        _fit_cli_entry(fit, fit_ngl, extra, floor),
    ]
    app = load_baselines(baselines)
    settings += _fit_with_entries(app, space, dm, fit_ngl, extra, floor)
    oc = ollama_choice(model, free_mib, total_mib, floor)
    why = oc.pop("why")
    settings.append(_entry("ollama", "ollama", oc, why, floor))
    settings += _app_entries(app, space, floor)
    if sweep:
        settings += _sweep_entries(
            space, dm, (dm_ngl, fit_ngl), n_layers, cores, sweep_shape, floor
        )
    names = [s["name"] for s in settings]
    assert len(set(names)) == len(names), names
    return {
        "version": PLAN_VERSION,
        "model": {"path": str(info.path), "file": info.path.name, "size_bytes": info.size_bytes},
        "layers": n_layers,
        "floor": floor,
        "free_mib": free_mib,
        "total_mib": total_mib,
        "cores": cores._asdict(),
        "fit_answer": fit,
        "settings": settings,
    }


# --- the measurement ----
def _read_versioned(path: Path, what: str, version: int, made_by: str) -> dict[str, Any]:
    """A JSON file this script wrote (`what`: plan or results), or one clear UserError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{what} file not found: {path}; write one with {made_by}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {what} {path}: {e}") from None
    if not isinstance(data, dict) or data.get("version") != version:
        raise UserError(f"{path} is not a version {version} {what} file of {made_by}")
    return data


def load_plan(path: Path) -> dict[str, Any]:
    plan = _read_versioned(path, "plan", PLAN_VERSION, "`anchors.py plan`")
    if not plan.get("settings"):
        raise UserError(f"{path} holds no settings")
    return plan


def study_workload(storage: str, study: str | None, attr: str = "workload_spec") -> dict[str, Any]:
    """The workload the study's children measured (the app's steady-state turn), or with
    `attr="confirm_spec"` the confirmation runs'."""
    from tuner.study import StudyRecord, load_existing_study

    s = load_existing_study(storage, study)
    spec = getattr(StudyRecord.from_study(s), attr)
    if not isinstance(spec, dict):
        raise UserError(f"study {s.study_name!r} has no {attr!r} attribute; was it run by dm-tune?")
    return spec


def _record(name: str, n: int, res: Any) -> dict[str, Any]:
    m = res.metrics
    return {
        "setting": name,
        "pass": n,
        "status": res.status,
        "reason": res.reason,
        "gen_tok_s": m.gen_tok_s if m else None,
        "ttft_ms": m.ttft_ms if m else None,
        "warm_ttft_ms": m.warm_ttft_ms if m else None,
        "prompt_tok_s": m.prompt_tok_s if m else None,
        "vram_mb": m.vram_mb if m else res.gpu.vram_mb,
        "load_s": m.load_s if m else None,
        "n_prompt_tokens": m.n_prompt_tokens if m else None,
        "wall_s": round(res.wall_s, 3),
    }


def _stats(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def summarize(settings: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: statuses, and medians and min-max of the ok runs."""
    out: dict[str, Any] = {}
    for s in settings:
        mine = [r for r in runs if r["setting"] == s["name"]]
        ok = [r for r in mine if r["status"] == "ok"]
        statuses: dict[str, int] = {}
        for r in mine:
            statuses[r["status"]] = statuses.get(r["status"], 0) + 1
        out[s["name"]] = {
            "runs": len(mine),
            "statuses": statuses,
            **{
                k: _stats([r[k] for r in ok if r[k] is not None])
                for k in ("gen_tok_s", "ttft_ms", "warm_ttft_ms", "vram_mb", "load_s")
            },
        }
    return out


def measure(
    plan: dict[str, Any],
    model: Path,
    workload: dict[str, Any],
    out: Path,
    *,
    runs: int,
    launcher: Launcher,
    deadline_s: float | None = None,
    timeout_s: float = 600.0,
    seed: int = SEED,
    echo: Any = print,
) -> dict[str, Any]:
    """Interleaved passes over the plan's settings, each run a child from `launcher`; results
    written after every run."""
    from objectives.launch import TrialSpec

    if runs < 1:
        raise UserError("--runs must be at least 1")
    if not model.is_file():
        raise UserError(f"model file not found: {model}")
    settings = plan["settings"]
    rng = random.Random(seed)
    t0 = time.monotonic()
    result: dict[str, Any] = {
        "version": RESULTS_VERSION,
        "model": {"path": str(model), "file": model.name, "size_bytes": model.stat().st_size},
        "plan": plan,
        "runs_per_setting": runs,
        "seed": seed,
        "workload": workload,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "stopped": None,
        "runs": [],
        "summary": {},
    }

    def save() -> None:
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        result["summary"] = summarize(settings, result["runs"])
        write_atomic(out, json.dumps(result, indent=1) + "\n")

    save()
    for n in range(1, runs + 1):
        order = list(settings)
        rng.shuffle(order)
        for s in order:
            if deadline_s is not None and time.monotonic() - t0 > deadline_s:
                result["stopped"] = f"deadline {deadline_s:g} s reached in pass {n}"
                save()
                echo(result["stopped"])
                return result
            res = launcher.run(TrialSpec.of(model, s["llama"], workload), timeout_s)
            rec = _record(s["name"], n, res)
            result["runs"].append(rec)
            save()
            tok = f"{rec['gen_tok_s']:.1f} tok/s" if rec["gen_tok_s"] is not None else res.reason
            echo(f"pass {n}/{runs} {s['name']}: {res.status} {tok}")
    save()
    return result


# --- the table ----
class Row(NamedTuple):
    setting: str
    group: str
    n_gpu_layers: int
    n_ctx: int
    threads: int
    batch: str
    flash: bool
    tok_s: dict[str, float | None]
    ttft_ms: float | None
    warm_ttft_ms: float | None
    vram_mb: float | None
    status: str
    below_floor: bool


class Target(NamedTuple):
    name: str
    measured: float | None  # ratio dm-tune / other
    goal: str
    met: bool | None  # None: not measurable (a side had no ok run)


def _status(st: dict[str, Any]) -> str:
    runs, statuses = st["runs"], st["statuses"]
    if runs == 0:
        return "not run"
    parts = [
        f"{'OOM' if k == 'oom' else k} {v}/{runs}" for k, v in sorted(statuses.items()) if k != "ok"
    ]
    return "; ".join(parts) if parts else f"ok {runs}/{runs}"


def table_rows(results: dict[str, Any]) -> list[Row]:
    summary = results.get("summary") or summarize(results["plan"]["settings"], results["runs"])
    rows = []
    for s in results["plan"]["settings"]:
        k, st = s["llama"], summary[s["name"]]
        rows.append(
            Row(
                setting=s["name"],
                group=s["group"],
                n_gpu_layers=int(k["n_gpu_layers"]),
                n_ctx=int(k["n_ctx"]),
                threads=int(k["n_threads"]),
                batch=f"{k['n_batch']}/{k.get('n_ubatch', min(512, int(k['n_batch'])))}",
                flash=bool(k.get("flash_attn", False)),
                tok_s=st["gen_tok_s"],
                ttft_ms=st["ttft_ms"]["median"],
                warm_ttft_ms=st["warm_ttft_ms"]["median"],
                vram_mb=st["vram_mb"]["median"],
                status=_status(st),
                below_floor=bool(s.get("below_floor")),
            )
        )
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(rows: list[Row]) -> list[Target]:
    """The issue's targets for the dm-tune tier, each met / not met / not measurable."""
    by = {r.setting: r for r in rows}
    dm = by.get("dm-tune")
    tok = dm.tok_s["median"] if dm else None
    out: list[Target] = []

    def add(name: str, ratio: float | None, goal: str, ok: bool) -> None:
        out.append(Target(name, ratio, goal, None if ratio is None else ok))

    app = by.get("fit+app")
    r = _ratio(tok, app.tok_s["median"] if app else None)
    add("tok/s vs fit+app", r, ">= 1.5x", r is not None and r >= 1.5)
    cli = by.get("fit+cli-defaults")
    r = _ratio(tok, cli.tok_s["median"] if cli else None)
    add("tok/s vs fit+cli-defaults", r, ">= 1.1x", r is not None and r >= 1.1)
    r = _ratio(dm.ttft_ms if dm else None, cli.ttft_ms if cli else None)
    add("cold TTFT vs fit+cli-defaults", r, "<= 0.6x", r is not None and r <= 0.6)
    sweep = [x.tok_s["median"] for x in rows if x.group == "sweep" and x.tok_s["median"]]
    r = _ratio(tok, max(sweep) if sweep else None)
    add("tok/s vs the sweep's best", r, "within 3 % (>= 0.97x)", r is not None and r >= 0.97)
    return out


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _room(plan: dict[str, Any]) -> str:
    """The free VRAM and context floor the plan was made for, where it says (a plan from
    `gpu_agree.py plan` or `cpu_tier.py plan` carries its settings only)."""
    out = ""
    if plan.get("free_mib") is not None:
        out += f"Free VRAM {plan['free_mib']:.0f} MiB of {plan['total_mib']:.0f}, "
    if plan.get("floor") is not None:
        out += f"context floor {plan['floor']}, "
    return out


def render(results: dict[str, Any], study_wall_s: float | None) -> str:
    rows, tg = table_rows(results), targets(table_rows(results))
    m = results["model"]
    plan = results["plan"]
    lines = [
        f"### {m['file']} ({m['size_bytes'] / 1e9:.2f} GB)",
        "",
        _room(plan) + f"{results['runs_per_setting']} fresh process(es) per setting, "
        "interleaved; tok/s median [min-max]."
        + (f" dm-tune study wall time: {study_wall_s:.0f} s." if study_wall_s else "")
        + (f" Stopped early: {results['stopped']}." if results.get("stopped") else ""),
        "",
        "| setting | group | n_gpu_layers | n_ctx | threads | batch/ubatch | flash | tok/s "
        "| cold TTFT ms | warm TTFT ms | VRAM MB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r.tok_s
        tok = "-" if t["median"] is None else f"{t['median']:.1f} [{t['min']:.1f}-{t['max']:.1f}]"
        ctx = f"{r.n_ctx} (below floor)" if r.below_floor else str(r.n_ctx)
        lines.append(
            f"| {r.setting} | {r.group} | {r.n_gpu_layers} | {ctx} | {r.threads} | {r.batch} "
            f"| {'on' if r.flash else 'off'} | {tok} | {_f(r.ttft_ms, '{:.0f}')} "
            f"| {_f(r.warm_ttft_ms, '{:.0f}')} | {_f(r.vram_mb, '{:.0f}')} | {r.status} |"
        )
    lines += ["", "| target (dm-tune tier) | measured | goal | |", "|---|---|---|---|"]
    for x in tg:
        met = "not measured" if x.met is None else "met" if x.met else "not met"
        lines.append(f"| {x.name} | {_f(x.measured, '{:.2f}x')} | {x.goal} | {met} |")
    return "\n".join(lines) + "\n"


def load_results(path: Path) -> dict[str, Any]:
    return _read_versioned(path, "results", RESULTS_VERSION, "`anchors.py measure`")


# --- CLI ----
def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="anchors.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("plan", help="write the settings to measure")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--profile", type=Path, required=True, help="dm-tune's exported profile")
    p.add_argument("--fit-answer", required=True, help="llama-fit-params' output, or @FILE")
    p.add_argument("--free-mib", type=float, required=True)
    p.add_argument("--total-mib", type=float, required=True)
    p.add_argument("--floor", type=int, default=4096)
    p.add_argument("--sweep", action="store_true")
    p.add_argument("--sweep-shape", choices=SWEEP_SHAPES, default="grid")
    p.add_argument("--baselines", type=Path, default=DEFAULT_BASELINES)
    p.add_argument("--search-space", type=Path, default=DEFAULT_SPACE)
    p.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("measure", help="measure a plan's settings, interleaved")
    m.add_argument("--plan", type=Path, required=True)
    m.add_argument("--model", type=Path, required=True)
    m.add_argument("--storage", required=True)
    m.add_argument("--study")
    m.add_argument("--spec-attr", default="workload_spec", help="or confirm_spec (next turn too)")
    m.add_argument("--runs", type=int, default=3)
    m.add_argument("--deadline-s", type=float)
    m.add_argument("--timeout-s", type=float, default=600.0, help="per child process")
    m.add_argument("--seed", type=int, default=SEED)
    m.add_argument("--out", type=Path, required=True)
    t = sub.add_parser("table", help="markdown tables and the issue's targets")
    t.add_argument("--results", type=Path, action="append", required=True)
    t.add_argument("--results2", type=Path, action="append", default=[])
    t.add_argument("--study-wall-s", type=float, action="append", default=[])
    t.add_argument("--out", type=Path, required=True)
    return ap


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        if a.cmd == "plan":
            if a.free_mib < 0 or a.total_mib <= 0 or a.floor < 1:
                raise UserError("--free-mib must be >= 0, --total-mib and --floor above 0")
            plan = build_plan(
                a.model,
                a.profile,
                _read_fit_answer(a.fit_answer),
                free_mib=a.free_mib,
                total_mib=a.total_mib,
                floor=a.floor,
                sweep=a.sweep,
                sweep_shape=a.sweep_shape,
                baselines=a.baselines,
                space_path=a.search_space,
            )
            write_atomic(a.out, json.dumps(plan, indent=1) + "\n")
            print(f"{len(plan['settings'])} settings -> {a.out}")
        elif a.cmd == "measure":
            plan = load_plan(a.plan)
            workload = study_workload(a.storage, a.study, a.spec_attr)
            from objectives.launch import ColdLauncher

            measure(
                plan,
                a.model,
                workload,
                a.out,
                runs=a.runs,
                launcher=ColdLauncher(),  # each run a fresh trial child
                deadline_s=a.deadline_s,
                timeout_s=a.timeout_s,
                seed=a.seed,
            )
        else:
            files = [*a.results, *a.results2]
            walls: list[float | None] = list(a.study_wall_s)
            if len(walls) == 1:
                walls = walls * len(files)
            elif not walls:
                walls = [None] * len(files)
            elif len(walls) != len(files):
                raise UserError("give --study-wall-s once, or once per results file")
            parts = [render(load_results(f), w) for f, w in zip(files, walls, strict=True)]
            write_atomic(a.out, "\n".join(parts))
            print(f"{len(parts)} table(s) -> {a.out}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
