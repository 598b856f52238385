"""Trial metrics: raw samples from the child, and the summary the study optimizes."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# Where a trial's VRAM figure comes from (TrialMetrics.vram_source; null on a CPU-only build):
# "process": NVML's per-process peak; "device-delta": NVML's device growth where it gives no
# per-process figure (Windows WDDM); "llama-buffers": llama.cpp's own device buffers, where
# NVML can't read the GPU (no NVIDIA driver: Metal, Vulkan, ROCm); "none": a build that offloads
# with no reading at all (its trial counts as over the budget, tuner/vram/_need.py).
VramSource = Literal["process", "device-delta", "llama-buffers", "none"]
LLAMA_BUFFERS: VramSource = "llama-buffers"
NO_READING: VramSource = "none"


@dataclass(frozen=True)
class Sample:
    """One measured answer."""

    gen_tok_s: float
    ttft_ms: float
    prompt_tok_s: float
    warm_ttft_ms: float | None = None
    tokens: int | None = None  # generated in this answer (fewer than max_tokens when capped)
    early_ttft_ms: float | None = None  # the early turn (short history), once per trial
    early_gen_tok_s: float | None = None


SIGNIFICANT_DIGITS = 6


def _rounded(value: Any) -> Any:
    """`value` with every float in it to SIGNIFICANT_DIGITS significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return value


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def cv(xs: list[float]) -> float:
    """Coefficient of variation (stdev / mean); 0 for a single sample."""
    if len(xs) < 2:
        return 0.0
    mean = statistics.fmean(xs)
    return float(statistics.stdev(xs) / mean) if mean else 0.0


@dataclass(frozen=True)
class TrialMetrics:
    """What one trial measured. VRAM is None when no GPU could be read (never a fake 0)."""

    gen_tok_s: float
    ttft_ms: float
    prompt_tok_s: float
    warm_ttft_ms: float | None
    load_s: float
    peak_rss_mb: float
    n_prompt_tokens: int
    n_generated: int
    gen_tok_s_cv: float
    ttft_ms_cv: float
    samples: tuple[Sample, ...] = field(default=())
    vram_mb: float | None = None
    vram_source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    early_ttft_ms: float | None = None
    early_gen_tok_s: float | None = None
    history_turns: int | None = None  # interactions in the measured prompt

    @classmethod
    def from_samples(
        cls,
        samples: list[Sample],
        *,
        load_s: float,
        peak_rss_mb: float,
        n_prompt_tokens: int,
        n_generated: int,
        history_turns: int | None = None,
    ) -> TrialMetrics:
        if not samples:
            raise ValueError("a trial needs at least one sample")
        gen = [s.gen_tok_s for s in samples]
        ttft = [s.ttft_ms for s in samples]
        warm = [s.warm_ttft_ms for s in samples if s.warm_ttft_ms is not None]
        early = [s.early_ttft_ms for s in samples if s.early_ttft_ms is not None]
        early_gen = [s.early_gen_tok_s for s in samples if s.early_gen_tok_s is not None]
        return cls(
            gen_tok_s=median(gen),
            ttft_ms=median(ttft),
            prompt_tok_s=median([s.prompt_tok_s for s in samples]),
            warm_ttft_ms=median(warm) if warm else None,
            load_s=load_s,
            peak_rss_mb=peak_rss_mb,
            n_prompt_tokens=n_prompt_tokens,
            n_generated=n_generated,
            gen_tok_s_cv=cv(gen),
            ttft_ms_cv=cv(ttft),
            samples=tuple(samples),
            early_ttft_ms=median(early) if early else None,
            early_gen_tok_s=median(early_gen) if early_gen else None,
            history_turns=history_turns,
        )

    def to_dict(self) -> dict[str, Any]:
        """The figures as stored (the trial's `metrics` user attribute, its objective values),
        each float to 6 significant digits: far below the measurement noise, and short enough
        that optuna-dashboard, which cuts an attribute at 1024 characters, shows all of it."""
        d = asdict(self)
        d["samples"] = [asdict(s) for s in self.samples]
        rounded: dict[str, Any] = _rounded(d)
        return rounded

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialMetrics:
        d = dict(d)
        d["samples"] = tuple(Sample(**s) for s in d.get("samples", ()))
        return cls(**d)
