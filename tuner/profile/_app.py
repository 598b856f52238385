"""The profile Desktop-Mate loads: tiers of measured llama_cpp.Llama(...) settings, and the
selector that picks the tier fitting this machine's free VRAM.

The app imports this module at start-up, so it must stay light: it imports neither optuna nor
plotly (tests/tuner/test_profile.py checks it in a fresh interpreter). Building a profile from
a study lives in tuner/profile/build.py.

File format (YAML, `version: 2`; version 1 files are still read): the model it was measured with
(name, size, sha256), how it was made (`provenance`), the conversation it was tuned for
(`conversation`, version 2: the context floor and its token counts), which knobs change answers
(`quality_affecting`), and `tiers` ordered by
decreasing `min_vram_free_mb`, the last one always the CPU tier (`n_gpu_layers: 0`,
`min_vram_free_mb: 0`). Unknown keys and wrong types are rejected: a typo such as `n_gpu_layer`
must fail loudly, not silently fall back to llama.cpp's defaults.
"""

from __future__ import annotations

import itertools
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from objectives.metrics import VramSource
from objectives.nvml import list_gpus
from tuner.history_fit import fit_history as fit_history
from tuner.model_file import sha256_cached
from tuner.yaml_io import describe_yaml_error, write_atomic

PROFILE_VERSION = 2
MAX_PROFILE_BYTES = 1 << 20  # a real profile is a few KB; refused above, before parsing
READABLE_VERSIONS = (1, 2)
Prefer = Literal["throughput", "latency", "balanced"]


class ProfileError(ValueError):
    """The profile can't be used; the one-line message names the field or file and the fix."""


class _Strict(BaseModel):
    # strict: 4096.0 or "true" are wrong types here, as llama.cpp would take them differently.
    # allow_inf_nan=False: a tier needing `.inf` MB would never be selected, `.nan` always.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ModelRef(_Strict):
    """The GGUF the tiers were measured with; the selector refuses a different file."""

    file: str = Field(min_length=1)
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Provenance(_Strict):
    """How the profile was made, so a reader can judge whether it applies to their machine."""

    gpu: str | None
    driver: str | None
    cpu: str
    llama_cpp_version: str
    study: str
    storage: str
    trials: list[int]
    created: datetime = Field(strict=False)  # YAML gives a datetime or an ISO string
    dm_tune_version: str
    vram_budget_mb: float | None = Field(ge=0)
    prefer: Prefer


class Conversation(_Strict):
    """The app's conversation the tiers were tuned for, and the context floor it sets.

    Every tier's `n_ctx` is at least `min_ctx`: the app's steady-state turn (system prompt, the
    last `turns_kept` interactions, the new message) plus a `max_tokens` reply fits it."""

    turns_kept: int = Field(ge=1)
    max_tokens: int = Field(ge=1)
    steady_state_tokens: int = Field(ge=1)  # the longest steady-state turn + max_tokens
    worst_case_tokens: int = Field(ge=1)  # every kept reply max_tokens long, + max_tokens
    min_ctx: int = Field(ge=1)
    min_ctx_rule: Literal["steady", "worst", "user"]
    # best tok/s at the floor vs below it (the app's own profiles below it), when measured
    floor_cost: dict[str, dict[str, float | int | None]] | None = None


# The keys Desktop-Mate passes to Llama(...) (src/ai/config.py); the rest of a tier is dropped.
APP_KEYS = ("n_gpu_layers", "n_ctx", "n_batch", "n_threads", "use_mlock")


class LlamaKeys(_Strict):
    """Keyword arguments for llama_cpp.Llama(...), exactly as it expects them (KV types as ints)."""

    n_gpu_layers: int = Field(ge=-1)
    n_ctx: int = Field(ge=1)
    n_batch: int = Field(ge=1)
    n_threads: int = Field(ge=1)
    use_mlock: bool
    flash_attn: bool | None = None
    n_ubatch: int | None = Field(default=None, ge=1)
    offload_kqv: bool | None = None
    use_mmap: bool | None = None
    n_threads_batch: int | None = Field(default=None, ge=1)
    type_k: int | None = Field(default=None, ge=0)
    type_v: int | None = Field(default=None, ge=0)

    def kwargs(self) -> dict[str, Any]:
        """Only the keys that are set: the others keep llama-cpp-python's defaults."""
        return self.model_dump(exclude_none=True)

    def beyond_app_keys(self) -> list[str]:
        """Keys set here that an app passing only APP_KEYS to Llama(...) would drop."""
        return [k for k in self.kwargs() if k not in APP_KEYS]


class Stat(_Strict):
    """A median over repeated runs and its coefficient of variation (stdev / mean)."""

    median: float = Field(ge=0)
    cv: float = Field(ge=0)


class Measured(_Strict):
    """What the tier's trial measured on the machine named in provenance."""

    trial: int = Field(ge=0)
    n: int = Field(ge=1)  # samples behind each median
    gen_tok_s: Stat
    ttft_ms: Stat
    warm_ttft_ms: Stat | None = None
    # the early turn (3 interactions of history), medians; measured by the confirmation runs
    early_ttft_ms: float | None = Field(default=None, ge=0)
    early_gen_tok_s: float | None = Field(default=None, ge=0)
    vram_mb: float | None = Field(default=None, ge=0)  # peak over the trial; null without a GPU
    # how vram_mb was read (objectives.metrics.VramSource); absent from profiles before it
    vram_source: VramSource | None = None
    # median and spread of the per-process peaks when re-measured in fresh processes
    vram: Stat | None = None


class Tier(_Strict):
    """One set of settings and the free VRAM it needs; the metadata keys are Desktop-Mate's."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    min_vram_free_mb: float = Field(ge=0)
    llama: LlamaKeys
    measured: Measured | None
    description: str
    vram_estimate: str
    speed_estimate: str
    recommended_for: str
    note: str = ""

    def app_keys_warning(self) -> str | None:
        """A warning when the app's five-key loader would drop some of this tier's settings."""
        extra = self.llama.beyond_app_keys()
        if not extra:
            return None
        return (
            f"tier {self.name} sets {', '.join(extra)}: Desktop-Mate passes only "
            f"{', '.join(APP_KEYS)} to Llama(...); pass the whole tier (docs/desktop-mate.md)"
        )


class Profile(_Strict):
    version: Literal[1, 2]
    model: ModelRef
    provenance: Provenance
    conversation: Conversation | None = None  # version 2
    default_tier: str
    quality_affecting: list[str] = Field(default_factory=list)
    tiers: list[Tier] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Profile:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        needs = [t.min_vram_free_mb for t in self.tiers]
        if any(a <= b for a, b in itertools.pairwise(needs)):
            raise ValueError("tiers must be ordered by decreasing min_vram_free_mb")
        last = self.tiers[-1]
        if last.llama.n_gpu_layers != 0 or last.min_vram_free_mb != 0:
            raise ValueError(
                "the last tier must be the CPU tier (n_gpu_layers 0, min_vram_free_mb 0)"
            )
        if self.default_tier not in names:
            raise ValueError(f"default_tier {self.default_tier!r} is not one of {', '.join(names)}")
        unknown = [k for k in self.quality_affecting if k not in LlamaKeys.model_fields]
        if unknown:
            raise ValueError(f"quality_affecting names an unknown knob {unknown[0]!r}")
        if self.version >= 2 and self.conversation is None:
            raise ValueError("a version 2 profile needs its 'conversation' (the context floor)")
        if self.conversation is not None:
            floor = self.conversation.min_ctx
            low = [t.name for t in self.tiers if t.llama.n_ctx < floor]
            if low:
                raise ValueError(
                    f"tier {low[0]!r} has n_ctx below the profile's context floor ({floor}): "
                    "the app's conversation would overflow it"
                )
        return self

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise ProfileError(f"no tier named {name!r}; use one of {', '.join(self.tier_names())}")

    def tier_names(self) -> list[str]:
        return [t.name for t in self.tiers]

    def tier_for(self, free_vram_mb: float) -> Tier:
        """The first (fastest) tier whose VRAM need fits; the CPU tier when none does."""
        for t in self.tiers:
            if t.min_vram_free_mb <= free_vram_mb:
                return t
        return self.tiers[-1]


def _describe(exc: ValidationError) -> str:
    errs = exc.errors()
    err = errs[0]
    where = ".".join(str(p) for p in err["loc"])
    more = f" (and {len(errs) - 1} more)" if len(errs) > 1 else ""
    if err["type"] == "extra_forbidden":
        return f"unknown key '{where}'; remove it or fix its spelling{more}"
    if err["type"] == "missing":
        return f"missing key '{where}'; add it or regenerate the profile (`dm-tune export`){more}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if not where:
        return f"{msg}; fix the file or regenerate it with `dm-tune export`{more}"
    got = repr(err.get("input"))
    got = got if len(got) <= 40 else got[:37] + "..."
    return f"'{where}': {msg}, got {got}; fix the value{more}"


def load_profile(path: Path | str) -> Profile:
    """Read and validate a profile; every problem is a ProfileError with a one-line message."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PROFILE_BYTES + 1)
        if len(raw) > MAX_PROFILE_BYTES:
            raise ProfileError(
                f"{path}: larger than {MAX_PROFILE_BYTES // (1 << 20)} MB, not a dm-tune profile "
                "(they are a few KB); regenerate it with `dm-tune export`"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ProfileError(f"profile not found: {path}; export one with `dm-tune export`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"cannot read profile {path}: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        why = describe_yaml_error(exc).split(";")[0]
        raise ProfileError(f"{path}: {why}; fix it or regenerate it") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: expected a mapping of keys at the top level (a profile)")
    version = data.get("version")
    if version not in READABLE_VERSIONS:
        raise ProfileError(
            f"{path}: profile version {version!r} is not supported (this dm-tune reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); regenerate it with `dm-tune export`"
        )
    try:
        return Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {_describe(exc)}") from None


def check_model(profile: Profile, model_path: Path | str) -> None:
    """Refuse a model file other than the one measured: its tiers' speed and VRAM would not hold.

    The size is compared first so a different model is refused without reading it; the sha256 is
    cached by (path, size, mtime), so the app pays for hashing once per model file.
    """
    path = Path(model_path)
    if not path.is_file():
        raise ProfileError(f"model file not found: {path}")
    want = profile.model
    size = path.stat().st_size
    if size == want.size_bytes and sha256_cached(path) == want.sha256:
        return
    raise ProfileError(
        f"the profile was measured with {want.file} (sha256 {want.sha256[:12]}..., "
        f"{want.size_bytes} bytes), not {path.name}; regenerate it for this model "
        "(`dm-tune run` then `dm-tune export`) or pass force=True (--force)"
    )


def _llama_can_offload() -> bool:
    """False when the installed llama-cpp-python is a CPU-only build; True when it can't tell."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return True


def detect_free_vram_mb() -> float:
    """Free VRAM over all NVIDIA GPUs (llama.cpp splits layers over every visible GPU by default,
    and dm-tune measures VRAM over all of them); 0 without a GPU or without a GPU build.
    """
    gpus = list_gpus()
    if not gpus:
        return 0.0
    if not _llama_can_offload():
        warnings.warn(
            "an NVIDIA GPU is present but the installed llama-cpp-python cannot offload to it "
            "(llama_supports_gpu_offload() is False): using the CPU tier; install a CUDA build",
            RuntimeWarning,
            stacklevel=3,
        )
        return 0.0
    return sum(g.free_mb for g in gpus)


def select_tier(
    path: Path | str,
    free_vram_mb: float | None = None,
    *,
    model_path: Path | str | None = None,
    force: bool = False,
) -> Tier:
    """The tier to load on this machine now; see select_profile."""
    profile = load_profile(path)
    if model_path is not None and not force:
        check_model(profile, model_path)
    free = detect_free_vram_mb() if free_vram_mb is None else free_vram_mb
    return profile.tier_for(free)


def select_profile(
    path: Path | str,
    free_vram_mb: float | None = None,
    *,
    model_path: Path | str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Keyword arguments for Llama(model_path=..., **keys) from the best tier that fits.

    `free_vram_mb` defaults to what NVML reports now (call it before loading the model).
    With `model_path`, a profile measured with another model file is refused unless `force`.
    """
    return select_tier(path, free_vram_mb, model_path=model_path, force=force).llama.kwargs()


def _header(profile: Profile) -> str:
    p = profile.provenance
    machine = p.gpu or f"CPU only ({p.cpu})"
    trials = ", ".join(str(n) for n in p.trials) or "none"
    lines = [
        f"Desktop-Mate LLM profile for {profile.model.file}, written by dm-tune "
        f"{p.dm_tune_version} on {p.created.isoformat(timespec='seconds')}.",
        f"Measured on {machine} with llama-cpp-python {p.llama_cpp_version},",
        f"study '{p.study}' ({p.storage}), trials {trials}, prefer={p.prefer}.",
        "The app calls tuner.profile.select_profile(this file) to pick the first tier whose",
        "min_vram_free_mb fits the free VRAM; the last tier runs on the CPU.",
        "Don't edit measured values: regenerate on the target machine with `dm-tune run`",
        "then `dm-tune export` (docs/desktop-mate.md).",
    ]
    return "".join(f"# {line}\n" for line in lines)


def profile_to_yaml(profile: Profile) -> str:
    data = profile.model_dump(mode="json")
    if data.get("conversation") is None:
        data.pop("conversation", None)
    for tier in data["tiers"]:
        tier["llama"] = {k: v for k, v in tier["llama"].items() if v is not None}
        if not tier["note"]:
            del tier["note"]
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return _header(profile) + body


def write_profile(path: Path | str, profile: Profile) -> None:
    """Write atomically (never a half-written file for the app to load), with a header comment."""
    write_atomic(Path(path), profile_to_yaml(profile))
