"""build_profile: tiers from fabricated trials (the selection rule is what's under test)."""

from __future__ import annotations

import pytest
from optuna.trial import FrozenTrial
from profile_data import BUDGET_MB, MODEL, PROVENANCE, MakeTrial

from tuner.profile import Profile, ProfileError, profile_to_yaml
from tuner.profile_build import build_profile, min_free_mb


def _build(trials: list[FrozenTrial], *, gpu: bool = True, **kw: object) -> Profile:
    return build_profile(
        trials,
        model=MODEL,
        provenance=PROVENANCE if gpu else {**PROVENANCE, "gpu": None, "driver": None},
        budget_mb=BUDGET_MB,
        prefer=str(kw.pop("prefer", "balanced")),
        gpu_present=gpu,
        **kw,  # type: ignore[arg-type]
    )


def test_one_tier_per_vram_fraction_then_cpu(gpu_profile: Profile) -> None:
    got = [(t.name, t.measured.trial if t.measured else None) for t in gpu_profile.tiers]
    assert got == [("performance", 1), ("balanced", 2), ("low_vram", 3), ("cpu_fallback", 0)]
    assert gpu_profile.default_tier == "performance"
    assert gpu_profile.provenance.trials == [0, 1, 2, 3]
    assert gpu_profile.provenance.vram_budget_mb == BUDGET_MB
    assert gpu_profile.quality_affecting == []


def test_min_free_vram_is_measured_plus_margin(gpu_profile: Profile) -> None:
    perf = gpu_profile.tier("performance")
    assert perf.min_vram_free_mb == min_free_mb(5000) == 5506
    assert perf.measured is not None and perf.measured.vram_mb == 5000
    assert gpu_profile.tier("cpu_fallback").min_vram_free_mb == 0


def test_tier_carries_llama_keys_measurements_and_app_metadata(gpu_profile: Profile) -> None:
    perf = gpu_profile.tier("performance")
    assert perf.llama.kwargs() == {
        "n_gpu_layers": 31,
        "n_ctx": 4096,
        "n_batch": 256,
        "n_threads": 2,
        "use_mlock": False,
        "flash_attn": True,
    }
    m = perf.measured
    assert m is not None and m.n == 3 and m.gen_tok_s.median == 80 and m.ttft_ms.cv == 0.02
    assert m.warm_ttft_ms is not None and m.warm_ttft_ms.median == 100
    assert perf.vram_estimate == "4.9 GB"
    assert perf.speed_estimate == "~80 tok/s"
    assert "RTX 4050" in perf.recommended_for


def test_infeasible_and_failed_trials_are_never_chosen(gpu_profile: Profile) -> None:
    chosen = {t.measured.trial for t in gpu_profile.tiers if t.measured}
    assert not chosen & {4, 5}


def test_cpu_only_machine_has_a_single_cpu_tier(make_trial: MakeTrial) -> None:
    trials = [make_trial(12, 800, None, 0), make_trial(15, 700, None, 0, n_ctx=4096)]
    profile = _build(trials, gpu=False)
    assert [t.name for t in profile.tiers] == ["cpu_fallback"]
    cpu = profile.tiers[0]
    assert cpu.measured is not None and cpu.measured.trial == 1 and cpu.measured.vram_mb is None
    assert cpu.llama.n_gpu_layers == 0 and cpu.vram_estimate == "CPU only"
    assert profile.default_tier == "cpu_fallback"


def test_gpu_study_without_a_cpu_trial_still_gets_an_unmeasured_cpu_tier(
    make_trial: MakeTrial,
) -> None:
    profile = _build([make_trial(80, 200, 5000, 31, n_ctx=4096)])
    cpu = profile.tiers[-1]
    assert cpu.name == "cpu_fallback" and cpu.measured is None
    assert cpu.llama.n_gpu_layers == 0 and cpu.llama.n_ctx == 4096
    assert "not measured" in cpu.note and cpu.speed_estimate == "not measured"
    assert "measured: null" in profile_to_yaml(profile)


def test_a_tier_with_the_same_settings_as_a_higher_one_is_dropped(make_trial: MakeTrial) -> None:
    same = {"n_ctx": 4096}
    trials = [make_trial(80, 200, 5000, 31, **same), make_trial(79, 201, 4400, 31, **same)]
    assert [t.name for t in _build(trials).tiers] == ["performance", "cpu_fallback"]


def test_lower_tiers_only_take_trials_needing_less_vram(make_trial: MakeTrial) -> None:
    # #1 fits every cap and is best: lower tiers add nothing unless they need less VRAM.
    trials = [make_trial(20, 900, 150, 0), make_trial(80, 200, 2000, 31)]
    profile = _build(trials)
    assert [t.name for t in profile.tiers] == ["performance", "cpu_fallback"]


def test_gpu_tier_whose_best_pick_is_a_cpu_trial_is_dropped(make_trial: MakeTrial) -> None:
    trials = [make_trial(20, 300, 150, 0), make_trial(10, 900, 1000, 5)]
    assert [t.name for t in _build(trials).tiers] == ["cpu_fallback"]


def test_prefer_rule_is_applied_within_each_tier(make_trial: MakeTrial) -> None:
    trials = [make_trial(80, 400, 5000, 31), make_trial(60, 150, 5000, 31, n_batch=512)]
    assert _build(trials, prefer="throughput").tiers[0].measured.trial == 0  # type: ignore[union-attr]
    assert _build(trials, prefer="latency").tiers[0].measured.trial == 1  # type: ignore[union-attr]


def test_quantized_kv_cache_is_listed_as_quality_affecting(make_trial: MakeTrial) -> None:
    profile = _build([make_trial(80, 200, 5000, 31, type_k="q8_0", type_v="f16")])
    assert profile.quality_affecting == ["type_k"]
    assert profile.tiers[0].llama.type_k == 8 and profile.tiers[0].llama.type_v == 1


def test_storage_password_is_not_written(make_trial: MakeTrial) -> None:
    profile = build_profile(
        [make_trial(20, 900, None, 0)],
        model=MODEL,
        provenance={**PROVENANCE, "storage": "postgresql://tuner:s3cret@db:5432/dm"},
        budget_mb=BUDGET_MB,
        prefer="balanced",
        gpu_present=False,
    )
    assert "s3cret" not in profile_to_yaml(profile)
    assert profile.provenance.storage == "postgresql://tuner:***@db:5432/dm"


def test_no_feasible_trial_is_a_clear_error(make_trial: MakeTrial) -> None:
    with pytest.raises(ProfileError, match="no completed trial fits the VRAM budget"):
        _build([make_trial(90, 150, 7000, 31)])


def test_unknown_prefer_is_refused(make_trial: MakeTrial) -> None:
    with pytest.raises(ProfileError, match="prefer must be one of"):
        _build([make_trial(20, 900, None, 0)], prefer="fastest")


def test_confirmed_tiers_carry_vram_median_and_spread(make_trial: MakeTrial) -> None:
    from tuner.confirm import apply_confirmations

    t = make_trial(300.0, 60.0, 5000.0, 33)
    cpu = make_trial(8.0, 3000.0, 800.0, 0)
    metrics = {**t.user_attrs["metrics"], "vram_mb": 5010.0, "vram_mb_runs": [4990.0, 5010.0]}
    confirmed = {
        str(t.number): {
            "status": "ok",
            "values": [301.0, 61.0],
            "metrics": metrics,
            "over_budget_mb": 5010.0 - BUDGET_MB,
        }
    }
    prof = _build(apply_confirmations([t, cpu], confirmed), confirmed={t.number})
    top = prof.tier(prof.default_tier).measured
    assert top is not None and top.vram is not None
    assert top.vram.median == 5000.0 and top.vram.cv > 0 and top.vram_mb == 5010.0
    assert prof.tiers[-1].measured is not None and prof.tiers[-1].measured.vram is None
