"""Progress display after each trial, and the guard that stops a study failing the same way."""

from __future__ import annotations

import time
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives.launch import ChildResult
from tuner.echo import Echo
from tuner.machine import crash_diagnosis
from tuner.profile import Prefer
from tuner.study._selection import choose_best
from tuner.study._share import counted_trials
from tuner.study._study_record import StudyRecord
from tuner.study._trial_record import DUPLICATE, SURPLUS, TrialRecord

STREAK_ANYWHERE = 5  # after the start, this many identical failures in a row also stop the study


def _fmt_s(seconds: float) -> str:
    seconds = round(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


def describe_settings(p: dict[str, object]) -> str:
    short = {
        "n_gpu_layers": "ngl",
        "n_ctx": "ctx",
        "n_batch": "batch",
        "n_threads": "thr",
        "use_mlock": "mlock",
        "flash_attn": "fa",
        "n_ubatch": "ubatch",
        "n_threads_batch": "thr_b",
        "offload_kqv": "kqv",
        "use_mmap": "mmap",
    }
    parts = []
    for k, v in p.items():
        if isinstance(v, bool):
            v = "on" if v else "off"
        parts.append(f"{short.get(k, k)}={v}")
    return " ".join(parts)


def diagnose(result: ChildResult | None, count: int, version: str | None) -> str:
    """Why the study stopped, and what to do: one line."""
    if result is None:
        return f"the first {count} trials all failed the same way; see `dm-tune report`"
    if result.status == "crashed":
        return f"the first {count} trials all crashed: " + crash_diagnosis(result, version)
    if result.status == "oom":
        return (
            f"{count} trials in a row ran out of memory ({result.reason}); lower the n_ctx "
            "choices in search_space.yaml or free memory, then run again"
        )
    if result.status == "timeout":
        return (
            f"{count} trials in a row timed out ({result.reason}); raise --trial-timeout "
            "or use a smaller model"
        )
    return f"{count} trials in a row failed the same way: {result.reason}"


class Progress:
    """Optuna callback: prints `[n/N] ... best ...` and stops on a run of identical failures."""

    def __init__(
        self,
        study: optuna.Study,
        *,
        total: int,
        start_count: int,
        latency: str,
        prefer: Prefer,
        max_same_failures: int,
        echo: Echo,
    ) -> None:
        self.total = total
        self.count = start_count
        self.latency = latency
        self.prefer = prefer
        self.max_same = max_same_failures
        self.echo = echo
        self.ran = 0
        self.t0 = time.perf_counter()
        self.streak_sig: str | None = None
        self.streak = 0
        self.abort_reason: str | None = None
        self.version = StudyRecord.from_study(study).llama_cpp_version or None

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        r = TrialRecord.from_frozen(trial)
        if r.status in (SURPLUS, DUPLICATE):
            return  # not run: the objective said why
        self.ran += 1
        # the study's count, all workers' trials included
        self.count = max(self.count + 1, len(counted_trials(study.get_trials(deepcopy=False))))
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.ran * max(self.total - self.count, 0)
        status = r.outcome
        named = r.baseline or r.start
        tag = f" [{named}]" if named else ""
        if trial.state == TrialState.COMPLETE and trial.values:
            tps, lat = trial.values
            vram = r.vram_mb
            vtxt = f", VRAM {vram:.0f} MB" if vram is not None else ""
            outcome = f"{tps:.1f} tok/s, {self.latency} TTFT {lat:.0f} ms{vtxt}"
            if status == "reused":
                outcome += f" (reused trial {r.reused_from})"
        else:
            outcome = f"{status.upper()}: {r.reason or ''}"
        best = choose_best(study.get_trials(deepcopy=False), self.prefer)
        btxt = (
            f" | best #{best.number}: {best.values[0]:.1f} tok/s, {best.values[1]:.0f} ms"
            if best is not None and best.values
            else ""
        )
        settings = describe_settings(r.settings)
        self.echo(
            f"[{self.count}/{self.total}] {_fmt_s(elapsed)} elapsed, ETA {_fmt_s(eta)} | "
            f"#{trial.number}{tag} {settings} -> {outcome}{btxt}"
        )
        for why in (r.spill, r.vram_unmeasured):
            if why is not None:
                self.echo(f"  #{trial.number} is over the VRAM budget: {why}")
        self._guard(study, trial)

    def _guard(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Count identical failures in a row; reused failures (same settings) count too."""
        r = TrialRecord.from_frozen(trial)
        failed = trial.state == TrialState.FAIL and r.status not in ("interrupted", None)
        if not failed or r.status is None:
            self.streak, self.streak_sig = 0, None
            return
        status: Any = r.status  # a failure's status as the child gave it (a ChildResult's)
        res = ChildResult(status, r.reason or "", returncode=r.returncode, phase=r.phase)
        sig = res.signature
        self.streak = self.streak + 1 if sig == self.streak_sig else 1
        self.streak_sig = sig
        at_start = self.ran == self.streak and self.streak >= self.max_same
        if at_start or self.streak >= STREAK_ANYWHERE:
            self.abort_reason = diagnose(res, self.streak, self.version)
            study.stop()
