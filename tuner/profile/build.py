"""Turn a finished study's trials into the tiered profile Desktop-Mate loads.

Tiers (names match Desktop-Mate's GPU_PROFILES, so `"gpu_profile": "performance"` keeps a meaning):
- one VRAM rule from study to selector (tuner/vram/_need.py): a setting whose measured peak is P
  asks for `min_vram_free_mb` = P + VRAM_MARGIN_MB free (rounded up). The study's constraint is
  the same need against the budget, so a feasible trial is exactly one whose tier the app's
  selector takes with the budget free. P is the confirmed peak where the trial was re-measured
  in fresh processes (the max over them, `vram_mb_runs`); when those peaks spread by more than
  half the margin, the tier gets a `note` that the margin may be too small on this machine.
- one GPU tier per fraction f of the VRAM budget (default 100 %, 75 %, 50 %; f <= 1): the trial
  that tuner.study.choose_best picks among the feasible trials whose *need* is at most
  budget x f *and* less than the tier above's (a trial needing as much as the tier above adds
  nothing: that tier already serves every machine it would). So the default tier's need is
  never above the budget. Trials without a VRAM reading can't be placed and are left out of GPU
  tiers. A tier whose pick runs no layer on the GPU is dropped: the CPU tier covers it.
- the CPU tier (always last, `min_vram_free_mb: 0`): the best trial with `n_gpu_layers == 0`
  (on a machine without an NVIDIA GPU every trial ran on the CPU, so all are candidates). On a GPU
  machine where no such trial was measured, it reuses the default tier's settings with
  `n_gpu_layers: 0`, `measured: null` and a note saying so.
- a GPU tier that the measured CPU tier dominates (at least as many tok/s and as early a first
  token, better in one) is dropped: it would only take VRAM from the desktop and the avatar.
- tiers whose settings equal a higher tier's are dropped; the default tier is the full-budget one
  (the CPU tier when no GPU tier remains).
- with the app's `conversation` (its context floor) the profile is `version: 2`; without it
  (a study made before the floor was recorded) `version: 1`.

The profile is made of the loader's dataclasses (tuner/profile/llm_profile.py, the one schema) and
written through `Profile.to_dict()` (`write_profile`), so what the app reads is what was checked.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import FrozenTrial

from objectives.llama_params import KV_TYPES, to_llama_kwargs
from objectives.metrics import cv
from tuner import __version__
from tuner.profile.llm_profile import (
    Conversation,
    LlamaKeys,
    Measured,
    ModelRef,
    Prefer,
    Profile,
    ProfileError,
    Provenance,
    SchemaError,
    Stat,
    Tier,
)
from tuner.space import KV_KNOBS
from tuner.study import (
    PREFER_CHOICES,
    candidates,
    choose_best,
    display_url,
    dominates,
    metrics_of,
    settings_of,
)
from tuner.vram import VRAM_MARGIN_MB, free_vram_need_mb
from tuner.yaml_io import write_atomic

CPU_TIER = "cpu_fallback"
_NAMES = {1.0: "performance", 0.75: "balanced", 0.5: "low_vram"}
TIER_FRACTIONS = tuple(_NAMES)  # of the VRAM budget: one GPU tier each


def tier_name(fraction: float) -> str:
    return _NAMES.get(round(fraction, 4), f"vram_{round(fraction * 100)}pct")


def _vram_runs(t: FrozenTrial) -> list[float]:
    """Per-process peaks of the fresh processes that confirmed `t` (empty when not confirmed)."""
    return [float(v) for v in metrics_of(t).get("vram_mb_runs") or []]


def _vram(t: FrozenTrial) -> float | None:
    """The peak a tier is built on: the confirmed one (max over the fresh processes) if any."""
    v = metrics_of(t).get("vram_mb")
    peaks = [float(v)] if v is not None else []
    return max([*peaks, *_vram_runs(t)], default=None)


def _need(t: FrozenTrial) -> float | None:
    """Free VRAM the trial's tier would ask for; None without a VRAM reading."""
    v = _vram(t)
    return None if v is None else free_vram_need_mb(v)


def _gpu_layers(t: FrozenTrial) -> int:
    return int(settings_of(t).get("n_gpu_layers", 0))


def _llama_keys(t: FrozenTrial, *, cpu: bool = False) -> LlamaKeys:
    kwargs = to_llama_kwargs(settings_of(t))
    kwargs.setdefault("use_mlock", False)  # not searched: llama-cpp-python's default, explicit
    if cpu:
        kwargs["n_gpu_layers"] = 0
    try:
        return LlamaKeys.from_dict(kwargs)
    except SchemaError as exc:
        raise ProfileError(
            f"trial {t.number}: llama_kwargs '{exc.where}' doesn't fit the profile schema "
            f"({exc.problem}); the profile has no place for this setting"
        ) from None


def _measured(t: FrozenTrial) -> Measured:
    m = metrics_of(t)
    samples = [s for s in m.get("samples") or [] if isinstance(s, dict)]
    warm = [float(s["warm_ttft_ms"]) for s in samples if s.get("warm_ttft_ms") is not None]
    warm_median = m.get("warm_ttft_ms")
    if warm_median is None and warm:
        warm_median = statistics.median(warm)
    return Measured(
        trial=t.number,
        n=max(1, len(samples)),
        gen_tok_s=Stat(median=float(m["gen_tok_s"]), cv=float(m.get("gen_tok_s_cv", 0.0))),
        ttft_ms=Stat(median=float(m["ttft_ms"]), cv=float(m.get("ttft_ms_cv", 0.0))),
        warm_ttft_ms=None if warm_median is None else Stat(median=warm_median, cv=cv(warm)),
        early_ttft_ms=_opt(m.get("early_ttft_ms")),
        early_gen_tok_s=_opt(m.get("early_gen_tok_s")),
        vram_mb=_vram(t),
        vram_source=m.get("vram_source"),
        vram=_vram_stat(m),
    )


def _opt(v: Any) -> float | None:
    return None if v is None else round(float(v), 2)


def _vram_stat(m: dict[str, Any]) -> Stat | None:
    runs = [float(v) for v in m.get("vram_mb_runs") or []]
    return Stat(median=statistics.median(runs), cv=cv(runs)) if runs else None


def _gb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB"


def _spread_note(t: FrozenTrial) -> str:
    """A warning when fresh processes' peaks differ by more than half the margin."""
    runs = _vram_runs(t)
    spread = max(runs) - min(runs) if len(runs) > 1 else 0.0
    if spread <= VRAM_MARGIN_MB / 2:
        return ""
    return (
        f"the VRAM peaks of the {len(runs)} processes that confirmed this tier spread by "
        f"{spread:.0f} MB, more than half the {VRAM_MARGIN_MB:.0f} MB margin: the margin may be "
        "too small on this machine; check the tier with `dm-tune verify`"
    )


def _gpu_tier(t: FrozenTrial, name: str, cap_mb: float, gpu: str | None, prefer: Prefer) -> Tier:
    measured = _measured(t)
    vram = measured.vram_mb or 0.0
    need = free_vram_need_mb(vram)
    return Tier(
        name=name,
        min_vram_free_mb=need,
        llama=_llama_keys(t),
        measured=measured,
        description=(
            f"best by the '{prefer}' rule needing at most {cap_mb:.0f} MB of free VRAM (trial "
            f"{t.number}: {measured.gen_tok_s.median:.1f} tok/s, first token "
            f"{measured.ttft_ms.median:.0f} ms)"
        ),
        vram_estimate=_gb(vram),
        speed_estimate=f"~{measured.gen_tok_s.median:.0f} tok/s",
        recommended_for=f"{gpu or 'an NVIDIA GPU'} with at least {_gb(need)} of free VRAM",
        note=_spread_note(t),
    )


def _cpu_tier(
    t: FrozenTrial, *, measured: bool, prefer: Prefer, cpu: str, source: str = ""
) -> Tier:
    m = _measured(t) if measured else None
    vram_estimate = "CPU only"
    if m is not None:
        description = (
            f"best by the '{prefer}' rule on the CPU alone (trial {t.number}: "
            f"{m.gen_tok_s.median:.1f} tok/s, first token {m.ttft_ms.median:.0f} ms)"
        )
        note = ""
        if m.vram_mb:  # a GPU build: llama.cpp still opens the GPU
            vram_estimate = f"CPU layers; {_gb(m.vram_mb)} of VRAM"
            note = (
                f"no layer on the GPU, yet this build took {m.vram_mb:.0f} MB of VRAM (llama.cpp "
                "opens every visible GPU: its CUDA context, and a buffer for prompt batches it "
                "sends there); on a card with less free, hide the GPU (CUDA_VISIBLE_DEVICES set "
                "to an empty value before llama_cpp is imported) or use a CPU build"
            )
    else:
        description = f"the {source} tier's settings with every layer on the CPU"
        note = (
            f"not measured: no completed trial with n_gpu_layers 0 is within the budget and the "
            f"context floor; these are trial {t.number}'s settings with n_gpu_layers 0. Run more "
            "trials (with 0 in the n_gpu_layers range) to measure one."
        )
    return Tier(
        name=CPU_TIER,
        min_vram_free_mb=0,
        llama=_llama_keys(t, cpu=True),
        measured=m,
        description=description,
        vram_estimate=vram_estimate,
        speed_estimate=f"~{m.gen_tok_s.median:.0f} tok/s" if m else "not measured",
        recommended_for=f"{cpu}; no NVIDIA GPU, or too little free VRAM for the GPU tiers",
        note=note,
    )


def _quality_affecting(tiers: Sequence[Tier], knobs: Sequence[str]) -> list[str]:
    """The flagged knobs (the search space's `quality_affecting`) that a tier sets to a KV cache
    type other than f16: those change the model's answers, not only its speed."""
    f16 = KV_TYPES["f16"]
    return [
        k
        for k in KV_KNOBS
        if k in knobs and any(getattr(t.llama, k) not in (None, f16) for t in tiers)
    ]


def build_profile(
    trials: list[FrozenTrial],
    *,
    model: dict[str, Any],
    provenance: dict[str, Any],
    budget_mb: float,
    prefer: Prefer,
    gpu_present: bool,
    tier_fractions: Sequence[float] = TIER_FRACTIONS,
    confirmed: set[int] | None = None,
    conversation: dict[str, Any] | None = None,
    quality_knobs: Sequence[str] = KV_KNOBS,
) -> Profile:
    """The profile for `trials` (see the module docstring for the rule).

    `provenance` holds gpu, driver, cpu, llama_cpp_version, study and storage; the trial numbers,
    budget, prefer rule, creation time and dm-tune version are filled in here. `trials` carry
    the confirmed metrics where re-measured (tuner.study.apply_confirmations); `conversation`
    is the app's conversation and context floor (tuner.profile.Conversation), None for a study
    made without one; `quality_knobs` the knobs the search space flags as quality_affecting.
    """
    _check_rule(prefer, tier_fractions)
    cands = [
        t for t in candidates(trials) if "gen_tok_s" in metrics_of(t) and "ttft_ms" in metrics_of(t)
    ]
    tiers = (
        _gpu_tiers(cands, budget_mb, tier_fractions, confirmed, provenance.get("gpu"), prefer)
        if gpu_present
        else []
    )
    cpu = str(provenance.get("cpu", "this CPU"))
    cpu_tier = _cpu_tier_of(cands, tiers, gpu_present, confirmed, prefer, cpu)
    tiers = _drop_duplicates([*_worth_their_vram(tiers, cpu_tier, cands), cpu_tier])
    prov = _full_provenance(provenance, tiers, budget_mb, prefer)
    return _assemble(model, prov, conversation, tiers, quality_knobs)


def _check_rule(prefer: Prefer, tier_fractions: Sequence[float]) -> None:
    """A known prefer rule, and no tier fraction that would let a tier need more than the budget."""
    if prefer not in PREFER_CHOICES:
        raise ProfileError(f"prefer must be one of {', '.join(PREFER_CHOICES)}, not {prefer!r}")
    if not all(0 < f <= 1 for f in tier_fractions):
        raise ProfileError(
            "tier fractions must be in (0, 1]: no tier may need more than the budget"
        )


def _gpu_tiers(
    cands: list[FrozenTrial],
    budget_mb: float,
    tier_fractions: Sequence[float],
    confirmed: set[int] | None,
    gpu_name: str | None,
    prefer: Prefer,
) -> list[Tier]:
    """One tier per fraction, largest first, each needing less free VRAM than the one above."""
    tiers: list[Tier] = []
    above: float | None = None  # free VRAM the tier above asks for
    for fraction in sorted(set(tier_fractions), reverse=True):
        cap = budget_mb * fraction
        pool = [
            t
            for t in cands
            if (need := _need(t)) is not None and need <= cap and (above is None or need < above)
        ]
        if confirmed and above is None:  # the default tier: only re-measured winners
            pool = [t for t in pool if t.number in confirmed] or pool
        best = choose_best(pool, prefer)
        if best is None or _gpu_layers(best) == 0:
            continue
        tiers.append(_gpu_tier(best, tier_name(fraction), cap, gpu_name, prefer))
        above = tiers[-1].min_vram_free_mb
    return tiers


def _cpu_tier_of(
    cands: list[FrozenTrial],
    tiers: list[Tier],
    gpu_present: bool,
    confirmed: set[int] | None,
    prefer: Prefer,
    cpu: str,
) -> Tier:
    """The CPU tier: the best CPU-only trial, else the top GPU tier's settings unmeasured."""
    cpu_pool = [t for t in cands if _gpu_layers(t) == 0] if gpu_present else cands
    if confirmed and not gpu_present:
        cpu_pool = [t for t in cpu_pool if t.number in confirmed] or cpu_pool
    cpu_best = choose_best(cpu_pool, prefer)
    if cpu_best is not None:
        return _cpu_tier(cpu_best, measured=True, prefer=prefer, cpu=cpu)
    if tiers:
        top = tiers[0]
        assert top.measured is not None
        source = next(t for t in cands if t.number == top.measured.trial)
        return _cpu_tier(source, measured=False, prefer=prefer, cpu=cpu, source=top.name)
    raise ProfileError(
        "no completed trial fits the VRAM budget; run more trials or raise --vram-budget"
    )


def _worth_their_vram(
    gpu_tiers: list[Tier], cpu_tier: Tier, cands: list[FrozenTrial]
) -> list[Tier]:
    """The GPU tiers that the measured CPU tier doesn't dominate. A few layers on the GPU can be
    slower than none (each token crosses between the two): a tier no faster and no quicker to
    answer than the CPU alone would only take VRAM from the desktop and the avatar."""
    if cpu_tier.measured is None:
        return gpu_tiers
    trial = {t.number: t for t in cands}
    cpu = trial[cpu_tier.measured.trial]
    return [
        t for t in gpu_tiers if t.measured is None or not dominates(cpu, trial[t.measured.trial])
    ]


def _full_provenance(
    provenance: dict[str, Any], tiers: list[Tier], budget_mb: float, prefer: Prefer
) -> dict[str, Any]:
    """The caller's provenance with the time, version, trials used, budget and rule added."""
    used = [t.measured.trial for t in tiers if t.measured is not None]
    return {
        "created": datetime.now(timezone.utc).replace(microsecond=0),
        "dm_tune_version": __version__,
        **provenance,
        # the profile is shared with the app and its users: never a password
        "storage": display_url(str(provenance.get("storage", ""))),
        "trials": sorted(set(used)),
        "vram_budget_mb": budget_mb,
        "prefer": prefer,
    }


def _assemble(
    model: dict[str, Any],
    prov: dict[str, Any],
    conversation: dict[str, Any] | None,
    tiers: list[Tier],
    quality_knobs: Sequence[str],
) -> Profile:
    """The Profile of the loader's schema; a schema mismatch becomes a ProfileError."""
    try:
        return Profile(
            version=1 if conversation is None else 2,
            model=ModelRef.from_dict(model, ("model",)),
            provenance=Provenance.from_dict(prov, ("provenance",)),
            conversation=(
                None
                if conversation is None
                else Conversation.from_dict(conversation, ("conversation",))
            ),
            default_tier=tiers[0].name,
            quality_affecting=_quality_affecting(tiers, quality_knobs),
            tiers=tiers,
        )
    except SchemaError as exc:
        where = exc.where or "(top level)"
        raise ProfileError(f"cannot build the profile: '{where}': {exc.problem}") from None


def _drop_duplicates(tiers: list[Tier]) -> list[Tier]:
    """Keep the first (higher) tier of any with identical Llama settings; the CPU tier stays."""
    kept: list[Tier] = []
    for t in tiers:
        if t.name != CPU_TIER and any(k.llama == t.llama for k in kept):
            continue
        kept.append(t)
    return kept


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
    """The profile's file text: a header comment, then `Profile.to_dict()`."""
    body = yaml.safe_dump(
        profile.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return _header(profile) + body


def write_profile(path: Path | str, profile: Profile) -> None:
    """Write atomically (never a half-written file for the app to load), with a header comment."""
    write_atomic(Path(path), profile_to_yaml(profile))
