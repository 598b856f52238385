"""`dm-tune verify`: measure each tier of a profile again, in fresh processes, and check that it
still holds on this machine: VRAM within the tier's `min_vram_free_mb`, speed within a tolerance
of the recorded median.

Why: a profile is a promise the app relies on at start-up. A driver update, another
llama-cpp-python, a thermal problem or a tier picked from one lucky trial can break it silently;
verify re-measures with exactly the study's child and workload, N times, and compares medians.
A tier that needs more free VRAM than this machine has is skipped, not failed: it can't run here,
which says nothing about the profile.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from objectives.launch import ColdLauncher, Launcher, TrialSpec
from objectives.workload import Workload
from tuner.echo import Echo
from tuner.errors import UserError
from tuner.machine import measurement_lock
from tuner.paths import default_config
from tuner.profile.llm_profile import Profile, Tier
from tuner.profile.run import FreeVram, free_vram, open_profile, resolve_model
from tuner.yaml_io import load_model

Verdict = Literal["pass", "fail", "skipped", "unrecorded"]
RUNS = 3  # fresh processes per tier
TOLERANCE = 0.10  # allowed tok/s drop below the recorded median
RUN_TIMEOUT_S = 600.0  # one run: a trial child's load, warm-up and answers


def _median(xs: tuple[float, ...]) -> float | None:
    return float(statistics.median(xs)) if xs else None


@dataclass(frozen=True)
class TierCheck:
    """One tier's recorded figures against what N fresh runs measured now."""

    name: str
    verdict: Verdict
    reason: str  # one line; empty on a plain pass
    recorded_tok_s: float | None  # None: the profile has no measurement for this tier
    vram_bound_mb: float  # the tier's min_vram_free_mb; 0 = no bound (the CPU tier)
    runs_tok_s: tuple[float, ...] = ()
    runs_vram_mb: tuple[float | None, ...] = ()

    @property
    def measured_tok_s(self) -> float | None:
        return _median(self.runs_tok_s)

    @property
    def measured_vram_mb(self) -> float | None:
        """Median VRAM over the runs; None when any run had no reading (no GPU): never a 0."""
        known = tuple(v for v in self.runs_vram_mb if v is not None)
        if not known or len(known) != len(self.runs_vram_mb):
            return None
        return _median(known)

    @property
    def delta_pct(self) -> float | None:
        got, want = self.measured_tok_s, self.recorded_tok_s
        if got is None or not want:
            return None
        return (got - want) / want * 100.0


@dataclass(frozen=True)
class VerifyReport:
    profile: Path
    model: Path
    workload: Path
    runs: int
    tolerance: float
    free_vram: FreeVram
    tiers: tuple[TierCheck, ...]
    warnings: tuple[str, ...] = ()  # echoed at the start: keys the app's loader would drop

    @property
    def passed(self) -> bool:
        return all(t.verdict != "fail" for t in self.tiers)


def judge(
    name: str,
    recorded_tok_s: float | None,
    vram_bound_mb: float,
    runs_tok_s: tuple[float, ...],
    runs_vram_mb: tuple[float | None, ...],
    tolerance: float,
) -> TierCheck:
    """The verdict from numbers alone (kept pure so the rule is testable without a GPU).

    Medians, not means: one run slowed by the desktop shouldn't fail a tier, nor one lucky
    run pass it. A bound of 0 (the CPU tier) is not checked: the app takes that tier whatever
    VRAM is free, and a CUDA build holds some VRAM even with no layer offloaded.
    """
    check = TierCheck(name, "pass", "", recorded_tok_s, vram_bound_mb, runs_tok_s, runs_vram_mb)
    problems = []
    vram = check.measured_vram_mb
    if vram_bound_mb > 0 and vram is not None and vram > vram_bound_mb:
        problems.append(f"VRAM {vram:.0f} MB > bound {vram_bound_mb:.0f} MB")
    delta = check.delta_pct
    if delta is not None and delta < -tolerance * 100.0:
        problems.append(f"{-delta:.0f} % slower than recorded (tolerance {tolerance:.0%})")
    if problems:
        return TierCheck(name, "fail", "; ".join(problems), *_rest(check))
    if recorded_tok_s is None:
        return TierCheck(name, "unrecorded", "no recorded figures to compare", *_rest(check))
    if vram_bound_mb > 0 and vram is None:
        return TierCheck(name, "pass", "VRAM unknown: not checked", *_rest(check))
    return check


def _rest(c: TierCheck) -> tuple[float | None, float, tuple[float, ...], tuple[float | None, ...]]:
    return c.recorded_tok_s, c.vram_bound_mb, c.runs_tok_s, c.runs_vram_mb


def _check_options(runs: int, tolerance: float, repeats: int | None, timeout_s: float) -> None:
    if runs < 1:
        raise UserError(f"--runs must be at least 1 (got {runs})")
    if not 0 <= tolerance < 1:
        raise UserError(
            f"--tolerance must be a fraction from 0 to below 1, e.g. 0.10 (got {tolerance})"
        )
    if repeats is not None and repeats < 1:
        raise UserError("--repeats must be at least 1")
    if timeout_s <= 0:
        raise UserError("--timeout must be above zero seconds")


def _verify_tier(
    tier: Tier,
    spec: TrialSpec,
    *,
    runs: int,
    tolerance: float,
    timeout_s: float,
    launcher: Launcher,
    echo: Echo,
) -> TierCheck:
    recorded = tier.measured.gen_tok_s.median if tier.measured is not None else None
    bound = tier.min_vram_free_mb
    tok_s: list[float] = []
    vram: list[float | None] = []
    for i in range(runs):
        res = launcher.run(spec, timeout_s)
        if res.status != "ok" or res.metrics is None:
            reason = f"run {i + 1}/{runs}: {res.reason or res.status}"
            echo(f"  {tier.name}: {reason}")
            return TierCheck(tier.name, "fail", reason, recorded, bound, tuple(tok_s), tuple(vram))
        tok_s.append(res.metrics.gen_tok_s)
        vram.append(res.metrics.vram_mb)
        shown = f", VRAM {res.metrics.vram_mb:.0f} MB" if res.metrics.vram_mb is not None else ""
        echo(f"  {tier.name}: run {i + 1}/{runs}: {res.metrics.gen_tok_s:.1f} tok/s{shown}")
    return judge(tier.name, recorded, bound, tuple(tok_s), tuple(vram), tolerance)


def verify_profile(
    path: Path,
    *,
    model: Path | None = None,
    runs: int = RUNS,
    tolerance: float = TOLERANCE,
    repeats: int | None = None,
    workload: Path | None = None,
    timeout_s: float = RUN_TIMEOUT_S,
    launcher: Launcher | None = None,
    wait: bool = True,
    echo: Echo = print,
    tiers: tuple[str, ...] = (),
) -> VerifyReport:
    """Re-measure every tier that fits this machine's free VRAM, `runs` fresh processes each
    (only the `tiers` named, when given; "default" names the profile's default tier).

    Each run is the study's own trial child with the study's spec shape, so the figures are
    comparable with the recorded ones as long as `workload` is the one the study used
    (`launcher`: a cold one of the real trial child unless given; tests pass stand-ins).
    The machine's measurement lock is held from the free-VRAM reading on (`wait=False`: a
    UserError instead of waiting for another measurement, tuner/machine/_measure_lock.py).
    """
    _check_options(runs, tolerance, repeats, timeout_s)
    workload = workload or default_config("workload.yaml")
    profile = open_profile(path)
    chosen = _chosen_tiers(profile, tiers)
    model_path = resolve_model(profile, model)
    w = load_model(workload, Workload)
    launcher = launcher or ColdLauncher()  # a fresh process per run
    with measurement_lock("dm-tune verify", f"profile {path.name}", wait=wait, echo=echo):
        free = free_vram()
        workload_spec = w.spec(repeats)
        echo(
            f"Verifying {len(chosen)} tier(s) of {path} on {model_path.name}: "
            f"{runs} run(s) each, {free.describe()}"
        )
        warnings = tuple(w for w in (t.app_keys_warning() for t in chosen) if w)
        for line in warnings:
            echo(f"warning: {line}")
        checks = []
        for tier in chosen:
            skipped = _skipped(tier, free)
            if skipped is not None:
                checks.append(skipped)
                continue
            checks.append(
                _verify_tier(
                    tier,
                    # type_k/type_v are already ggml ints here; the child's to_llama_kwargs
                    # leaves ints alone.
                    TrialSpec.of(model_path, tier.llama.kwargs(), workload_spec),
                    runs=runs,
                    tolerance=tolerance,
                    timeout_s=timeout_s,
                    launcher=launcher,
                    echo=echo,
                )
            )
        return VerifyReport(
            path, model_path, workload, runs, tolerance, free, tuple(checks), warnings
        )


def _skipped(tier: Tier, free: FreeVram) -> TierCheck | None:
    """A tier that needs more free VRAM than this machine has is skipped, not failed."""
    need = tier.min_vram_free_mb
    if not (need > 0 and (free.mb is None or free.mb < need)):
        return None
    recorded = tier.measured.gen_tok_s.median if tier.measured is not None else None
    reason = f"skipped (needs {need:.0f} MB free, {free.describe()})"
    return TierCheck(tier.name, "skipped", reason, recorded, need)


def _chosen_tiers(profile: Profile, names: tuple[str, ...]) -> list[Tier]:
    """The profile's tiers named (all when none is); one clear error for an unknown name."""
    if not names:
        return list(profile.tiers)
    by_name = {t.name: t for t in profile.tiers}
    wanted = [profile.default_tier if n == "default" else n for n in names]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise UserError(
            f"no tier named {', '.join(unknown)} in the profile; its tiers are "
            f"{', '.join(by_name)} (or `default`)"
        )
    return [by_name[n] for n in dict.fromkeys(wanted)]


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _row(c: TierCheck) -> list[str]:
    got = c.measured_tok_s
    spread = f" ({min(c.runs_tok_s):.1f}-{max(c.runs_tok_s):.1f})" if len(c.runs_tok_s) > 1 else ""
    delta = c.delta_pct
    if c.verdict == "skipped":
        verdict = c.reason  # "skipped (needs X MB free, Y)"
    else:
        verdict = c.verdict.upper() + (f": {c.reason}" if c.reason else "")
    vram = c.measured_vram_mb
    return [
        c.name,
        _num(c.recorded_tok_s),
        "-" if got is None else f"{got:.1f}{spread}",
        "-" if delta is None else f"{delta:+.1f} %",
        f"{c.vram_bound_mb:.0f} MB" if c.vram_bound_mb > 0 else "none",
        f"{vram:.0f} MB" if vram is not None else ("unknown" if c.runs_tok_s else "-"),
        verdict,
    ]


def render(report: VerifyReport) -> str:
    """The table people read; the verdict column says why a tier failed or was skipped."""
    head = [
        "tier",
        "recorded tok/s",
        "measured tok/s (min-max)",
        "delta",
        "VRAM bound",
        "measured VRAM",
        "verdict",
    ]
    rows = [head, *(_row(c) for c in report.tiers)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    failed = [c.name for c in report.tiers if c.verdict == "fail"]
    if failed:
        summary = f"FAILED: {', '.join(failed)} (tolerance {report.tolerance:.0%})"
    else:
        summary = (
            f"OK: {sum(c.verdict != 'skipped' for c in report.tiers)} tier(s) verified, "
            f"{sum(c.verdict == 'skipped' for c in report.tiers)} skipped"
        )
    note = (
        f"Medians of {report.runs} fresh process(es) per tier, workload {report.workload} "
        "(compare only with a profile measured with the same workload)."
    )
    return "\n".join([*lines, "", summary, note])
