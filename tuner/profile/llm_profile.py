"""The profile Desktop-Mate loads: tiers of measured llama_cpp.Llama(...) settings, and the
selector that picks the tier fitting this machine's free VRAM.

The app vendors this file (copied as is, e.g. as `src/ai/llm_profile.py`, next to a copy of
tuner/history_fit.py): it needs Python 3.10+ and PyYAML only, and imports nothing else from
dm-tune. pynvml (nvidia-ml-py) is used when installed, to read the free VRAM; without it there is
no GPU reading and the CPU tier is chosen unless the caller passes `free_vram_mb`. It writes
nothing (no cache). tests/tuner/test_profile_vendored.py imports it in a venv holding PyYAML
alone. It is also the profile's one schema: dm-tune's builder (tuner/profile/build.py) makes and
writes the profile through these dataclasses (`Profile.to_dict()`).

File format (YAML, `version: 2`; version 1 files are still read): the model it was measured with
(`model`: name, size, sha256, and `quick_digest`, see `quick_digest`), how it was made
(`provenance`), the conversation it was tuned for (`conversation`, version 2: the context floor
and its token counts), which knobs change answers (`quality_affecting`), and `tiers` ordered by
decreasing `min_vram_free_mb`, the last one always the CPU tier (`n_gpu_layers: 0`,
`min_vram_free_mb: 0`). Unknown keys in a tier's `llama` and wrong types are rejected: a typo such
as `n_gpu_layer` must fail loudly, not silently fall back to llama.cpp's defaults. Elsewhere the
keys only describe the profile, and `load_profile` skips the ones it doesn't know with a
ProfileWarning: a newer dm-tune may add such keys within a version (it added `quick_digest` and
`vram_source`), and the app's copy of this file must still read its profiles. A change a reader
can't skip (a new `llama` key, a new rule) comes with a new `version`. Types are strict: 4096.0 or
"4096" is not an int, 1 is not a bool (llama.cpp would take them differently), and numbers are
finite (a tier needing `.inf` MB would never be selected, `.nan` always).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args

import yaml

PROFILE_VERSION = 2
MAX_PROFILE_BYTES = 1 << 20  # a real profile is a few KB; refused above, before parsing
READABLE_VERSIONS = (1, 2)
QUICK_DIGEST_SPAN = 1 << 20  # bytes hashed at each end of the model file by quick_digest
# How a tier's VRAM peak was read; dm-tune's objectives.metrics.VramSource must equal it.
VramSource = Literal["process", "device-delta", "llama-buffers", "none"]
MinCtxRule = Literal["steady", "worst", "user"]
# The keys Desktop-Mate passes to Llama(...) (src/ai/config.py); the rest of a tier is dropped.
APP_KEYS = ("n_gpu_layers", "n_ctx", "n_batch", "n_threads", "use_mlock")

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIER_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_NO_VALUE: Any = object()
_Loc = tuple[str | int, ...]
D = TypeVar("D")


class Prefer(str, Enum):
    """The rule that picks a trial among the Pareto-optimal ones (`--prefer`); files hold the
    value. A `str` Enum (not StrEnum: the app may run Python 3.10)."""

    THROUGHPUT = "throughput"
    LATENCY = "latency"
    BALANCED = "balanced"

    def __str__(self) -> str:  # messages and f-strings show the word, as the files do
        return self.value


class ProfileError(ValueError):
    """The profile can't be used; the one-line message names the field or file and the fix."""


class ProfileWarning(UserWarning):
    """Keys of the profile this loader doesn't know and skipped (see the module docstring)."""


class SchemaError(ProfileError):
    """One problem with the profile's content: where it is (`where`, e.g. 'tiers.0.llama.n_ctx',
    '' for a rule over the whole profile) and what it is (`problem`)."""

    def __init__(self, loc: _Loc, problem: str, got: Any = _NO_VALUE, *, kind: str = "value"):
        super().__init__(problem)
        self.loc, self.problem, self.got, self.kind = loc, problem, got, kind

    @property
    def where(self) -> str:
        return ".".join(str(p) for p in self.loc)

    def within(self, *outer: str | int) -> SchemaError:
        """The same problem, located inside `outer` (a parent's key path)."""
        return SchemaError((*outer, *self.loc), self.problem, self.got, kind=self.kind)

    def __str__(self) -> str:
        where = self.where
        if self.kind == "unknown":
            return f"unknown key '{where}'; remove it or fix its spelling"
        if self.kind == "missing":
            return f"missing key '{where}'; add it or regenerate the profile (`dm-tune export`)"
        if not where:
            return f"{self.problem}; fix the file or regenerate it with `dm-tune export`"
        got = "" if self.got is _NO_VALUE else f", got {_short(self.got)}"
        return f"'{where}': {self.problem}{got}; fix the value"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# -- checks of one value, used by the dataclasses' __post_init__ ---------------------------------


def _int(v: Any, name: str, *, ge: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise SchemaError((name,), "expected an integer", v)
    if v < ge:
        raise SchemaError((name,), f"must be at least {ge}", v)
    return v


def _num(v: Any, name: str, *, ge: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise SchemaError((name,), "expected a number", v)
    if not math.isfinite(v):
        raise SchemaError((name,), "expected a finite number", v)
    if v < ge:
        raise SchemaError((name,), f"must be at least {ge:g}", v)
    return float(v)


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):
        raise SchemaError((name,), "expected true or false", v)
    return v


def _str(v: Any, name: str, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
    if not isinstance(v, str):
        raise SchemaError((name,), "expected a string", v)
    if pattern is not None and not pattern.fullmatch(v):
        raise SchemaError((name,), f"expected {what}", v)
    return v


def _choice(v: Any, name: str, choices: tuple[Any, ...]) -> Any:
    if isinstance(v, bool) or v not in choices:
        raise SchemaError((name,), f"expected one of {', '.join(map(repr, choices))}", v)
    return v


def _optional(check: Callable[..., Any], v: Any, name: str, **kw: Any) -> Any:
    return None if v is None else check(v, name, **kw)


def _instance(v: Any, name: str, cls: type) -> None:
    if not isinstance(v, cls):
        raise SchemaError((name,), f"expected a {cls.__name__} mapping", v)


def _list(v: Any, name: str, item: Callable[[Any, str], Any]) -> list[Any]:
    if not isinstance(v, list):
        raise SchemaError((name,), "expected a list", v)
    out = []
    for i, x in enumerate(v):
        try:
            out.append(item(x, name))
        except SchemaError as exc:
            raise SchemaError(
                (name, i, *exc.loc[1:]), exc.problem, exc.got, kind=exc.kind
            ) from None
    return out


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalizing a frozen dataclass in __post_init__


# -- reading a mapping into a dataclass ----------------------------------------------------------


def _keys(cls: type, data: Any, loc: _Loc) -> dict[str, Any]:
    """`data`'s keys checked against `cls`'s fields: an unknown or a missing key is an error."""
    if not isinstance(data, Mapping):
        raise SchemaError(loc, "expected a mapping of keys", data)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise SchemaError((*loc, str(key)), "unknown key", kind="unknown")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in data:
            raise SchemaError((*loc, name), "missing key", kind="missing")
    return dict(data)


def _make(cls: Callable[..., D], values: dict[str, Any], loc: _Loc) -> D:
    try:
        return cls(**values)
    except SchemaError as exc:
        raise exc.within(*loc) from None


def _nested(values: dict[str, Any], name: str, read: Callable[[Any, _Loc], Any], loc: _Loc) -> None:
    """Replace the mapping under `name` (when set) with what `read` makes of it."""
    if values.get(name) is not None:
        values[name] = read(values[name], (*loc, name))


def _plain(v: Any) -> Any:
    """A dataclass as YAML-ready plain data (datetimes as ISO text, as earlier profiles had)."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, datetime):
        return v.isoformat().replace("+00:00", "Z")
    if isinstance(v, Enum):
        return v.value
    return v


# -- the schema -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """The GGUF the tiers were measured with; the selector refuses a different file.

    `quick_digest` (see `quick_digest()`) is what the app checks; `sha256`, the whole file's, is
    what `dm-tune verify` checks. Profiles written before `quick_digest` lack it: their model is
    checked by its size only."""

    file: str
    size_bytes: int
    sha256: str
    quick_digest: str | None = None

    def __post_init__(self) -> None:
        if not _str(self.file, "file"):
            raise SchemaError(("file",), "expected a file name", self.file)
        _int(self.size_bytes, "size_bytes", ge=0)
        _str(self.sha256, "sha256", pattern=_SHA256, what="64 lowercase hex digits")
        _optional(_str, self.quick_digest, "quick_digest", pattern=_SHA256, what="64 hex digits")

    @classmethod
    def from_dict(cls, data: Any, loc: _Loc = ()) -> ModelRef:
        return _make(cls, _keys(cls, data, loc), loc)


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """How the profile was made, so a reader can judge whether it applies to their machine."""

    gpu: str | None
    driver: str | None
    cpu: str
    llama_cpp_version: str
    study: str
    storage: str
    trials: list[int]
    created: datetime  # in the file: ISO 8601 text (or a YAML timestamp)
    dm_tune_version: str
    vram_budget_mb: float | None
    prefer: Prefer

    def __post_init__(self) -> None:
        _optional(_str, self.gpu, "gpu")
        _optional(_str, self.driver, "driver")
        for name in ("cpu", "llama_cpp_version", "study", "storage", "dm_tune_version"):
            _str(getattr(self, name), name)
        _set(self, "trials", _list(self.trials, "trials", lambda v, n: _int(v, n, ge=0)))
        if not isinstance(self.created, datetime):
            raise SchemaError(("created",), "expected a date and time", self.created)
        _set(self, "vram_budget_mb", _optional(_num, self.vram_budget_mb, "vram_budget_mb"))
        _set(self, "prefer", Prefer(_choice(self.prefer, "prefer", tuple(p.value for p in Prefer))))

    @classmethod
    def from_dict(cls, data: Any, loc: _Loc = ()) -> Provenance:
        values = _keys(cls, data, loc)
        created = values.get("created")
        if isinstance(created, str):
            try:  # "Z": Python before 3.11 doesn't read it
                values["created"] = datetime.fromisoformat(created.replace("Z", "+00:00"))
            except ValueError:
                raise SchemaError(
                    (*loc, "created"), "expected an ISO 8601 date and time", created
                ) from None
        return _make(cls, values, loc)


def _floor_cost(v: Any, name: str) -> dict[str, dict[str, float | int | None]]:
    if not isinstance(v, dict) or not all(
        isinstance(k, str)
        and isinstance(row, dict)
        and all(
            isinstance(key, str)
            and (x is None or (isinstance(x, int | float) and not isinstance(x, bool)))
            for key, x in row.items()
        )
        for k, row in v.items()
    ):
        raise SchemaError((name,), "expected a mapping of mappings of numbers", v)
    return v


@dataclass(frozen=True, kw_only=True)
class Conversation:
    """The app's conversation the tiers were tuned for, and the context floor it sets.

    Every tier's `n_ctx` is at least `min_ctx`: the app's steady-state turn (system prompt, the
    last `turns_kept` interactions, the new message) plus a `max_tokens` reply fits it."""

    turns_kept: int
    max_tokens: int
    steady_state_tokens: int  # the longest steady-state turn + max_tokens
    worst_case_tokens: int  # every kept reply max_tokens long, + max_tokens
    min_ctx: int
    min_ctx_rule: MinCtxRule
    # best tok/s at the floor vs below it (the app's own profiles below it), when measured
    floor_cost: dict[str, dict[str, float | int | None]] | None = None

    def __post_init__(self) -> None:
        for name in ("turns_kept", "max_tokens", "steady_state_tokens", "worst_case_tokens"):
            _int(getattr(self, name), name, ge=1)
        _int(self.min_ctx, "min_ctx", ge=1)
        _choice(self.min_ctx_rule, "min_ctx_rule", get_args(MinCtxRule))
        _optional(_floor_cost, self.floor_cost, "floor_cost")

    @classmethod
    def from_dict(cls, data: Any, loc: _Loc = ()) -> Conversation:
        return _make(cls, _keys(cls, data, loc), loc)


@dataclass(frozen=True, kw_only=True)
class LlamaKeys:
    """Keyword arguments for llama_cpp.Llama(...), exactly as it expects them (KV types as ints)."""

    n_gpu_layers: int
    n_ctx: int
    n_batch: int
    n_threads: int
    use_mlock: bool
    flash_attn: bool | None = None
    n_ubatch: int | None = None
    offload_kqv: bool | None = None
    use_mmap: bool | None = None
    n_threads_batch: int | None = None
    type_k: int | None = None
    type_v: int | None = None

    _BOOLS: ClassVar[tuple[str, ...]] = ("use_mlock", "flash_attn", "offload_kqv", "use_mmap")
    _MIN: ClassVar[dict[str, int]] = {
        "n_gpu_layers": -1,  # -1: every layer
        "n_ctx": 1,
        "n_batch": 1,
        "n_threads": 1,
        "n_ubatch": 1,
        "n_threads_batch": 1,
        "type_k": 0,
        "type_v": 0,
    }

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None and f.default is None:
                continue
            if f.name in self._BOOLS:
                _bool(v, f.name)
            else:
                _int(v, f.name, ge=self._MIN[f.name])

    @classmethod
    def from_dict(cls, data: Any, loc: _Loc = ()) -> LlamaKeys:
        return _make(cls, _keys(cls, data, loc), loc)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def kwargs(self) -> dict[str, Any]:
        """Only the keys that are set: the others keep llama-cpp-python's defaults."""
        return {k: v for k, v in _plain(self).items() if v is not None}

    def beyond_app_keys(self) -> list[str]:
        """Keys set here that an app passing only APP_KEYS to Llama(...) would drop."""
        return [k for k in self.kwargs() if k not in APP_KEYS]


@dataclass(frozen=True, kw_only=True)
class Stat:
    """A median over repeated runs and its coefficient of variation (stdev / mean)."""

    median: float
    cv: float

    def __post_init__(self) -> None:
        _set(self, "median", _num(self.median, "median"))
        _set(self, "cv", _num(self.cv, "cv"))

    @classmethod
    def from_dict(cls, data: Any, loc: _Loc = ()) -> Stat:
        return _make(cls, _keys(cls, data, loc), loc)


@dataclass(frozen=True, kw_only=True)
class Measured:
    """What the tier's trial measured on the machine named in provenance."""

    trial: int
    n: int  # samples behind each median
    gen_tok_s: Stat
    ttft_ms: Stat
    warm_ttft_ms: Stat | None = None
    # the early turn (3 interactions of history), medians; measured by the confirmation runs
    early_ttft_ms: float | None = None
    early_gen_tok_s: float | None = None
    vram_mb: float | None = None  # peak over the trial; null without a GPU
    # how vram_mb was read; absent from profiles before it
    vram_source: VramSource | None = None
    # median and spread of the per-process peaks when re-measured in fresh processes
    vram: Stat | None = None

    _STATS: ClassVar[tuple[str, ...]] = ("gen_tok_s", "ttft_ms", "warm_ttft_ms", "vram")

    def __post_init__(self) -> None:
        _int(self.trial, "trial", ge=0)
        _int(self.n, "n", ge=1)
        _instance(self.gen_tok_s, "gen_tok_s", Stat)
        _instance(self.ttft_ms, "ttft_ms", Stat)
        for name in ("warm_ttft_ms", "vram"):
            _optional(_instance, getattr(self, name), name, cls=Stat)
        for name in ("early_ttft_ms", "early_gen_tok_s", "vram_mb"):
            _set(self, name, _optional(_num, getattr(self, name), name))
        _optional(_choice, self.vram_source, "vram_source", choices=get_args(VramSource))

    @classmethod
    def from_dict(cls, data: Any, loc: _Loc = ()) -> Measured:
        values = _keys(cls, data, loc)
        for name in cls._STATS:
            _nested(values, name, Stat.from_dict, loc)
        return _make(cls, values, loc)


@dataclass(frozen=True, kw_only=True)
class Tier:
    """One set of settings and the free VRAM it needs; the metadata keys are Desktop-Mate's."""

    name: str
    min_vram_free_mb: float
    llama: LlamaKeys
    measured: Measured | None
    description: str
    vram_estimate: str
    speed_estimate: str
    recommended_for: str
    note: str = ""

    def __post_init__(self) -> None:
        _str(self.name, "name", pattern=_TIER_NAME, what="letters, digits, '_', '.' or '-'")
        _set(self, "min_vram_free_mb", _num(self.min_vram_free_mb, "min_vram_free_mb"))
        _instance(self.llama, "llama", LlamaKeys)
        _optional(_instance, self.measured, "measured", cls=Measured)
        for name in ("description", "vram_estimate", "speed_estimate", "recommended_for", "note"):
            _str(getattr(self, name), name)

    @classmethod
    def from_dict(cls, data: Any, loc: _Loc = ()) -> Tier:
        values = _keys(cls, data, loc)
        _nested(values, "llama", LlamaKeys.from_dict, loc)
        _nested(values, "measured", Measured.from_dict, loc)
        return _make(cls, values, loc)

    def app_keys_warning(self) -> str | None:
        """A warning when the app's five-key loader would drop some of this tier's settings."""
        extra = self.llama.beyond_app_keys()
        if not extra:
            return None
        return (
            f"tier {self.name} sets {', '.join(extra)}: Desktop-Mate passes only "
            f"{', '.join(APP_KEYS)} to Llama(...); pass the whole tier (docs/desktop-mate.md)"
        )


def _tier(v: Any, name: str) -> Tier:
    _instance(v, name, Tier)
    return v  # type: ignore[no-any-return]


@dataclass(frozen=True, kw_only=True)
class Profile:
    """The whole file. Besides each field's own checks: tier names are unique, tiers are ordered
    by decreasing `min_vram_free_mb`, the last is the CPU tier, `default_tier` names a tier,
    `quality_affecting` names Llama keys, and a version 2 profile has its `conversation`, whose
    context floor every tier's `n_ctx` reaches."""

    version: Literal[1, 2]
    model: ModelRef
    provenance: Provenance
    conversation: Conversation | None = None  # version 2
    default_tier: str
    quality_affecting: list[str] = field(default_factory=list)
    tiers: list[Tier]

    def __post_init__(self) -> None:
        _choice(self.version, "version", READABLE_VERSIONS)
        _instance(self.model, "model", ModelRef)
        _instance(self.provenance, "provenance", Provenance)
        _optional(_instance, self.conversation, "conversation", cls=Conversation)
        _str(self.default_tier, "default_tier")
        _set(self, "quality_affecting", _list(self.quality_affecting, "quality_affecting", _str))
        _set(self, "tiers", _list(self.tiers, "tiers", _tier))
        if not self.tiers:
            raise SchemaError(("tiers",), "expected at least one tier (the CPU tier)", [])
        self._consistent()

    def _consistent(self) -> None:
        def rule(problem: str) -> SchemaError:
            return SchemaError((), problem, kind="rule")

        names = self.tier_names()
        if len(set(names)) != len(names):
            raise rule("tier names must be unique")
        needs = [t.min_vram_free_mb for t in self.tiers]
        if any(a <= b for a, b in itertools.pairwise(needs)):
            raise rule("tiers must be ordered by decreasing min_vram_free_mb")
        last = self.tiers[-1]
        if last.llama.n_gpu_layers != 0 or last.min_vram_free_mb != 0:
            raise rule("the last tier must be the CPU tier (n_gpu_layers 0, min_vram_free_mb 0)")
        if self.default_tier not in names:
            raise rule(f"default_tier {self.default_tier!r} is not one of {', '.join(names)}")
        unknown = [k for k in self.quality_affecting if k not in LlamaKeys.names()]
        if unknown:
            raise rule(f"quality_affecting names an unknown knob {unknown[0]!r}")
        if self.version >= 2 and self.conversation is None:
            raise rule("a version 2 profile needs its 'conversation' (the context floor)")
        if self.conversation is not None:
            floor = self.conversation.min_ctx
            low = [t.name for t in self.tiers if t.llama.n_ctx < floor]
            if low:
                raise rule(
                    f"tier {low[0]!r} has n_ctx below the profile's context floor ({floor}): "
                    "the app's conversation would overflow it"
                )

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """The profile in `data` (as YAML gives it); every problem is a SchemaError."""
        values = _keys(cls, data, ())
        _nested(values, "model", ModelRef.from_dict, ())
        _nested(values, "provenance", Provenance.from_dict, ())
        _nested(values, "conversation", Conversation.from_dict, ())
        tiers = values.get("tiers")
        if isinstance(tiers, list):
            values["tiers"] = [Tier.from_dict(t, ("tiers", i)) for i, t in enumerate(tiers)]
        return _make(cls, values, ())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for YAML, read back by from_dict: unset Llama keys (llama.cpp's defaults),
        an empty note, a missing quick digest and a missing conversation are left out."""
        data: dict[str, Any] = _plain(self)
        if data["conversation"] is None:
            del data["conversation"]
        if data["model"]["quick_digest"] is None:
            del data["model"]["quick_digest"]
        for tier in data["tiers"]:
            tier["llama"] = {k: v for k, v in tier["llama"].items() if v is not None}
            if not tier["note"]:
                del tier["note"]
        return data

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


# -- reading the file -----------------------------------------------------------------------------


def describe_yaml_error(exc: yaml.YAMLError) -> str:
    """'YAML tags are not allowed' for `!!python/...` and other tags, else 'not valid YAML'."""
    mark = getattr(exc, "problem_mark", None)
    at = f" at line {mark.line + 1}" if mark is not None else ""
    problem = str(getattr(exc, "problem", "") or "")
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        tag = problem.split("'")[1] if problem.count("'") >= 2 else "a tag"
        tag = tag.replace("tag:yaml.org,2002:", "!!")
        return f"YAML tags are not allowed ({tag}{at}); remove the tag"
    return f"not valid YAML{at}; fix the syntax"


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
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise ProfileError(
            f"{path}: profile version {version!r} is not supported (this dm-tune reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); regenerate it with `dm-tune export`"
        )
    skipped: list[str] = []
    data = _skip_unknown(data, Profile, (), skipped)
    try:
        profile = Profile.from_dict(data)
    except SchemaError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    if skipped:
        warnings.warn(
            f"{path}: skipped {', '.join(repr(k) for k in skipped)}, unknown to this reader "
            "(from a newer dm-tune, or misspelt); they only describe the profile. To read "
            "them, update the copy of llm_profile.py",
            ProfileWarning,
            stacklevel=2,
        )
    return profile


# The sections whose keys only describe the profile, and the sections inside them. A tier's
# `llama` is not one: each of its keys goes to Llama(...), so an unknown one is an error there.
_DESCRIBING: dict[type, dict[str, type]] = {
    Profile: {"model": ModelRef, "provenance": Provenance, "conversation": Conversation},
    Tier: {"measured": Measured},
    Measured: {name: Stat for name in Measured._STATS},
}


def _skip_unknown(data: Any, cls: type, loc: _Loc, skipped: list[str]) -> Any:
    """`data` without the keys that `cls`, a describing section, doesn't know (their paths
    added to `skipped`); anything else is left for from_dict to judge."""
    if not isinstance(data, Mapping):
        return data
    known = {f.name for f in dataclasses.fields(cls)}
    inner = _DESCRIBING.get(cls, {})
    out: dict[Any, Any] = {}
    for key, value in data.items():
        if key not in known:
            skipped.append(".".join(str(p) for p in (*loc, key)))
        elif cls is Profile and key == "tiers" and isinstance(value, list):
            out[key] = [
                _skip_unknown(t, Tier, (*loc, key, i), skipped) for i, t in enumerate(value)
            ]
        elif key in inner:
            out[key] = _skip_unknown(value, inner[key], (*loc, key), skipped)
        else:
            out[key] = value
    return out


# -- the model file -------------------------------------------------------------------------------


def quick_digest(path: Path | str) -> str:
    """A cheap identity of a model file: sha256 over its size (decimal, then a newline), its
    first QUICK_DIGEST_SPAN bytes and its last QUICK_DIGEST_SPAN bytes (those not already in the
    first). Reads at most 2 MiB, so the app can check a multi-GB GGUF at every start; a GGUF's
    header (its tensor list) and last tensors differ between models and quantizations."""
    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256(f"{size}\n".encode())
    with path.open("rb") as fh:
        head = fh.read(QUICK_DIGEST_SPAN)
        h.update(head)
        fh.seek(max(len(head), size - QUICK_DIGEST_SPAN))
        h.update(fh.read(QUICK_DIGEST_SPAN))
    return h.hexdigest()


def check_model(
    profile: Profile,
    model_path: Path | str,
    *,
    full_sha256: Callable[[Path], str] | None = None,
) -> None:
    """Refuse a model file other than the one measured: its tiers' speed and VRAM would not hold.

    The size is compared first, so a different model is refused without reading it; then the
    quick digest (2 MiB read) when the profile records one: profiles written before
    `model.quick_digest` are checked by size only. `full_sha256` (dm-tune's verify and soak pass
    a cached whole-file hash) also compares the file's sha256; the app doesn't, so it never
    hashes a multi-GB file nor writes a cache.
    """
    path = Path(model_path)
    if not path.is_file():
        raise ProfileError(f"model file not found: {path}")
    want = profile.model
    same = path.stat().st_size == want.size_bytes
    if same and want.quick_digest is not None:
        same = quick_digest(path) == want.quick_digest
    if same and full_sha256 is not None:
        same = full_sha256(path) == want.sha256
    if same:
        return
    raise ProfileError(
        f"the profile was measured with {want.file} (sha256 {want.sha256[:12]}..., "
        f"{want.size_bytes} bytes), not {path.name}; regenerate it for this model "
        "(`dm-tune run` then `dm-tune export`) or pass force=True (--force)"
    )


# -- free VRAM and the selector -------------------------------------------------------------------


def _gpu_free_mb() -> list[float]:
    """Free MB of each NVIDIA GPU through pynvml; [] without pynvml, a driver or a GPU."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    try:
        count = pynvml.nvmlDeviceGetCount()
        return [
            pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).free / 2**20
            for i in range(count)
        ]
    except Exception:
        return []
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _llama_can_offload() -> bool:
    """False when the installed llama-cpp-python is a CPU-only build; True when it can't tell."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return True


def detect_free_vram_mb() -> float:
    """Free VRAM over all NVIDIA GPUs (llama.cpp splits layers over every visible GPU by default,
    and dm-tune measures VRAM over all of them); 0 without a GPU, without pynvml or without a
    GPU build of llama-cpp-python.
    """
    free = _gpu_free_mb()
    if not free:
        return 0.0
    if not _llama_can_offload():
        warnings.warn(
            "an NVIDIA GPU is present but the installed llama-cpp-python cannot offload to it "
            "(llama_supports_gpu_offload() is False): using the CPU tier; install a CUDA build",
            RuntimeWarning,
            stacklevel=3,
        )
        return 0.0
    return sum(free)


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
    With `model_path`, a profile measured with another model file is refused unless `force`
    (by size and quick digest: see check_model).
    """
    return select_tier(path, free_vram_mb, model_path=model_path, force=force).llama.kwargs()
