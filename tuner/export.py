"""Export the best feasible settings of a study as the profile YAML Desktop-Mate loads."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna

from tuner.confirm import Remeasure, apply_confirmations, confirm_trials
from tuner.errors import UserError
from tuner.profile import Profile, ProfileError, write_profile
from tuner.profile_build import build_profile
from tuner.progress import describe_settings

Echo = Callable[[str], None]


def _provenance(study: optuna.Study, storage: str) -> dict[str, Any]:
    hw = study.user_attrs.get("hardware", {})
    gpus = hw.get("gpus") or []
    return {
        "gpu": gpus[0]["name"] if gpus else None,
        "driver": gpus[0]["driver"] if gpus else None,
        "cpu": f"{hw.get('cpu', 'unknown CPU')} ({hw.get('logical_cores', '?')} threads)",
        "llama_cpp_version": str(study.user_attrs.get("llama_cpp_version", "unknown")),
        "study": study.study_name,
        "storage": storage,
    }


def _compare_to_baseline(study: optuna.Study, tier: Any, echo: Echo) -> None:
    """Default tier vs Desktop-Mate's own "performance" profile measured in the same study."""
    ref = next((t for t in study.trials if t.user_attrs.get("baseline") == "performance"), None)
    if ref is None or tier.measured is None:
        return
    c = study.user_attrs.get("confirmed", {}).get(str(ref.number), {})
    values = c.get("values") or ref.values
    if not values or ref.state.name != "COMPLETE":
        echo(f"  Desktop-Mate's performance profile (trial {ref.number}) did not run here.")
        return
    tps, lat = tier.measured.gen_tok_s.median, tier.measured.ttft_ms.median
    if study.user_attrs["settings"].get("latency") == "warm" and tier.measured.warm_ttft_ms:
        lat = tier.measured.warm_ttft_ms.median
    echo(
        f"  vs Desktop-Mate's performance profile (trial {ref.number}: {values[0]:.1f} tok/s, "
        f"{values[1]:.0f} ms): {(tps / values[0] - 1) * 100:+.1f} % tok/s, "
        f"{(lat / values[1] - 1) * 100:+.1f} % first-token latency"
    )


def export_profile(
    study: optuna.Study,
    *,
    prefer: str,
    out_dir: Path,
    storage: str,
    output: Path | None = None,
    remeasure: Remeasure | None = None,
    echo: Echo = print,
) -> Path:
    """Build the tiered profile from the study's feasible trials and write it atomically.

    With `remeasure`, every tier's trial that was not confirmed yet is measured again first and
    the profile is rebuilt on the confirmed numbers, so each tier records confirmed values."""
    attrs = study.user_attrs
    if "model" not in attrs or "settings" not in attrs:
        raise UserError(
            f"study '{study.study_name}' was not made by dm-tune run; nothing to export"
        )
    m = attrs["model"]
    model = {"file": m["file"], "size_bytes": m["size_bytes"], "sha256": m["sha256"]}
    gpu_present = bool(attrs.get("hardware", {}).get("gpus")) and bool(attrs.get("gpu_offload"))

    def build() -> Profile:
        confirmed = study.user_attrs.get("confirmed", {})
        trials = apply_confirmations(study.get_trials(deepcopy=False), confirmed)
        ok = {int(n) for n, c in confirmed.items() if c.get("status") == "ok"}
        try:
            return build_profile(
                trials,
                confirmed=ok or None,
                model=model,
                provenance=_provenance(study, storage),
                budget_mb=float(attrs["settings"]["vram_budget_mb"]),
                prefer=prefer,
                gpu_present=gpu_present,
            )
        except ProfileError as exc:
            raise UserError(str(exc)) from None

    profile = build()
    if remeasure is not None:
        done = study.user_attrs.get("confirmed", {})
        numbers = {t.measured.trial for t in profile.tiers if t.measured is not None}
        todo = [study.trials[n] for n in sorted(numbers) if str(n) not in done]
        if todo:
            echo(f"Confirming the tiers' settings ({len(todo)} more):")
            confirm_trials(study, todo, remeasure, echo)
            profile = build()
    path = output or out_dir / f"{study.study_name}.yaml"
    try:
        write_profile(path, profile)
    except OSError as exc:
        raise UserError(f"cannot write the profile to {path}: {exc.strerror}") from None
    default = profile.tier(profile.default_tier)
    echo(f"Profile written: {path}")
    for tier in profile.tiers:
        mark = " (default)" if tier.name == profile.default_tier else ""
        meas = tier.measured
        perf = (
            f"{meas.gen_tok_s.median:.1f} tok/s, {meas.ttft_ms.median:.0f} ms"
            if meas is not None
            else "not measured"
        )
        echo(
            f"  tier {tier.name}{mark}: needs {tier.min_vram_free_mb:.0f} MB free VRAM | "
            f"{describe_settings(tier.llama.kwargs())} | {perf}"
        )
    _compare_to_baseline(study, default, echo)
    if profile.quality_affecting:
        echo(
            f"note: {', '.join(profile.quality_affecting)} change the model's answers "
            "(quantized KV cache): check answer quality before shipping this profile"
        )
    echo(
        f"Chosen by --prefer {prefer} among the Pareto-optimal trials within the VRAM budget "
        f"(docs/selection.md). Load it: Llama(model_path=..., **tier.llama). "
        f"Default tier: {default.name}."
    )
    return path
