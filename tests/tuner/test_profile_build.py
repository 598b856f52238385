"""build_profile: tiers from fabricated trials (the selection rule is what's under test)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from optuna.trial import FrozenTrial
from profile_data import BUDGET_MB, MODEL, PROVENANCE, MakeTrial, confirmation, over_budget
from report_study import FLOOR, LAYERS, add, make_study

from tuner.profile import Prefer, Profile, ProfileError
from tuner.profile.build import build_profile, profile_to_yaml
from tuner.profile.export import study_profile
from tuner.study import apply_confirmations
from tuner.vram import VRAM_MARGIN_MB, free_vram_need_mb


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
    assert perf.min_vram_free_mb == free_vram_need_mb(5000) == 5000 + VRAM_MARGIN_MB
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


def test_a_gpu_tier_the_measured_cpu_tier_dominates_is_dropped(make_trial: MakeTrial) -> None:
    # A few layers on the GPU slower than none (the 7B studies' low_vram tier had 3 layers at
    # ~4.7 tok/s): with the CPU-only trial measured (here without a VRAM reading, so it is in no
    # GPU tier's pool), the lower tier would only take VRAM from the desktop and the avatar.
    trials = [
        make_trial(80, 200, 5000, 31, n_ctx=4096),
        make_trial(5, 2600, 1300, 3, n_ctx=4096),
        make_trial(8, 2000, None, 0, n_ctx=4096),
    ]
    profile = _build(trials)
    assert [(t.name, t.measured and t.measured.trial) for t in profile.tiers] == [
        ("performance", 0),
        ("cpu_fallback", 2),
    ]
    assert profile.provenance.trials == [0, 2]


def test_a_gpu_tier_faster_or_quicker_than_the_cpu_tier_stays(make_trial: MakeTrial) -> None:
    trials = [
        make_trial(80, 200, 5000, 31, n_ctx=4096),
        make_trial(9, 2600, 1300, 3, n_ctx=4096),  # more tok/s than the CPU, a later first token
        make_trial(8, 2000, None, 0, n_ctx=4096),
    ]
    assert [t.name for t in _build(trials).tiers] == ["performance", "balanced", "cpu_fallback"]


def test_a_cpu_tier_that_took_vram_on_a_gpu_build_says_so(make_trial: MakeTrial) -> None:
    # The 7B study's CPU-only trial on the H200's CUDA build peaked at 870 MB (CUDA context and
    # a compute buffer): the tier needs no free VRAM to be chosen, but it is not VRAM-free.
    trials = [make_trial(80, 200, 5000, 31, n_ctx=4096), make_trial(7, 10000, 870, 0, n_ctx=4096)]
    cpu = _build(trials).tier("cpu_fallback")
    assert cpu.min_vram_free_mb == 0 and cpu.vram_estimate == "CPU layers; 0.8 GB of VRAM"
    assert "took 870 MB of VRAM" in cpu.note and "CUDA_VISIBLE_DEVICES" in cpu.note
    cpu_build = _build([make_trial(7, 10000, None, 0, n_ctx=4096)], gpu=False).tiers[0]
    assert cpu_build.vram_estimate == "CPU only" and cpu_build.note == ""


def test_prefer_rule_is_applied_within_each_tier(make_trial: MakeTrial) -> None:
    trials = [make_trial(80, 400, 5000, 31), make_trial(60, 150, 5000, 31, n_batch=512)]
    assert _build(trials, prefer="throughput").tiers[0].measured.trial == 0  # type: ignore[union-attr]
    assert _build(trials, prefer="latency").tiers[0].measured.trial == 1  # type: ignore[union-attr]


def test_quantized_kv_cache_is_listed_as_quality_affecting(make_trial: MakeTrial) -> None:
    profile = _build([make_trial(80, 200, 5000, 31, type_k="q8_0", type_v="f16")])
    assert profile.quality_affecting == ["type_k"]
    assert profile.tiers[0].llama.type_k == 8 and profile.tiers[0].llama.type_v == 1


def test_only_the_knobs_the_search_space_flags_are_listed(make_trial: MakeTrial) -> None:
    trials = [make_trial(80, 200, 5000, 31, type_k="q8_0", type_v="q4_0")]
    assert _build(trials).quality_affecting == ["type_k", "type_v"]  # the default flags
    assert _build(trials, quality_knobs=("type_v",)).quality_affecting == ["type_v"]
    assert _build(trials, quality_knobs=()).quality_affecting == []


@pytest.mark.parametrize(
    ("recorded", "listed"),
    [(None, ["type_k"]), (["type_k", "type_v"], ["type_k"]), (["type_v"], []), ([], [])],
)
def test_export_uses_the_flags_the_study_recorded_from_its_search_space(
    tmp_path: Path, recorded: list[str] | None, listed: list[str]
) -> None:
    """A real SQLite study; one made before the flags were recorded (None) lists every KV knob."""
    study, url = make_study(tmp_path)
    study.set_user_attr("confirmed", {})  # the tiers are the fastest trials, not confirmed ones
    if recorded is not None:
        study.set_user_attr("quality_affecting", recorded)
    fastest = {"n_gpu_layers": LAYERS, "n_ctx": FLOOR, "n_threads": 4, "flash_attn": False}
    kwargs = {**fastest, "n_batch": 512, "use_mlock": False, "type_k": 8}  # q8_0
    add(study, ngl=LAYERS, tok_s=10_000.0, ttft=1.0, vram=1000.0, llama_kwargs=kwargs)
    profile = study_profile(study, prefer=Prefer.BALANCED, storage=url)
    assert profile.tiers[0].llama.type_k == 8
    assert profile.quality_affecting == listed


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


def test_the_prefer_rule_is_written_as_its_word_and_read_back_as_the_enum(
    make_trial: MakeTrial,
) -> None:
    """The file holds plain `prefer: latency` (what the app and older dm-tunes read)."""
    text = profile_to_yaml(_build([make_trial(20, 900, None, 0)], prefer=Prefer.LATENCY))
    assert yaml.safe_load(text)["provenance"]["prefer"] == "latency"
    assert "\n  prefer: latency\n" in text
    back = Profile.from_dict(yaml.safe_load(text))
    assert back.provenance.prefer is Prefer.LATENCY
    assert f"prefer={back.provenance.prefer}." == "prefer=latency."  # as messages show it


def test_unknown_prefer_is_refused(make_trial: MakeTrial) -> None:
    with pytest.raises(ProfileError, match="prefer must be one of"):
        _build([make_trial(20, 900, None, 0)], prefer="fastest")


def test_confirmed_tiers_carry_vram_median_and_spread(make_trial: MakeTrial) -> None:
    t = make_trial(300.0, 60.0, 5000.0, 33)
    cpu = make_trial(8.0, 3000.0, 800.0, 0)
    confirmed = {str(t.number): confirmation(t, [4990.0, 5010.0])}
    prof = _build(apply_confirmations([t, cpu], confirmed), confirmed={t.number})
    top = prof.tier(prof.default_tier).measured
    assert top is not None and top.vram is not None
    assert top.vram.median == 5000.0 and top.vram.cv > 0 and top.vram_mb == 5010.0
    assert prof.tiers[-1].measured is not None and prof.tiers[-1].measured.vram is None


# The one VRAM rule near its boundary: a trial whose need (peak + margin) is the budget is the
# last one the default tier may take. Constraints are recorded as the study records them.
EDGE_MB = BUDGET_MB - VRAM_MARGIN_MB  # the highest peak whose tier fits the budget
FRACTIONS = {"performance": 1.0, "balanced": 0.75, "low_vram": 0.5}


def _assert_selectable(profile: Profile) -> None:
    """What every export must hold: the default tier is taken with the budget free, tiers are
    ordered by need, and each GPU tier needs no more than its fraction of the budget."""
    default = profile.tier(profile.default_tier)
    assert default.min_vram_free_mb <= BUDGET_MB
    assert profile.tier_for(BUDGET_MB).name == profile.default_tier
    needs = [t.min_vram_free_mb for t in profile.tiers]
    assert needs == sorted(needs, reverse=True) and len(set(needs)) == len(needs)
    for tier in profile.tiers[:-1]:
        assert tier.measured is not None and tier.measured.vram_mb is not None
        assert tier.min_vram_free_mb == free_vram_need_mb(tier.measured.vram_mb)
        assert tier.min_vram_free_mb <= BUDGET_MB * FRACTIONS[tier.name]


def _edge_study(make_trial: MakeTrial, peak_mb: float, **kw: object) -> list[FrozenTrial]:
    """A fast trial peaking at `peak_mb`, a slower one needing less, and a CPU trial."""
    return [
        make_trial(20, 900, 150, 0, over_budget=over_budget(150)),
        make_trial(80, 200, peak_mb, 31, n_ctx=4096, **kw),
        make_trial(40, 400, 3000, 16, over_budget=over_budget(3000)),
    ]


@pytest.mark.parametrize(
    ("peak_mb", "fast_is_default"),
    [(EDGE_MB - 1, True), (EDGE_MB, True), (EDGE_MB + 1, False)],
)
def test_the_default_tier_takes_a_trial_exactly_when_its_need_fits_the_budget(
    make_trial: MakeTrial, peak_mb: float, fast_is_default: bool
) -> None:
    trials = _edge_study(make_trial, peak_mb, over_budget=over_budget(peak_mb))
    profile = _build(trials)
    _assert_selectable(profile)
    default = profile.tier(profile.default_tier)
    assert default.name == "performance"
    assert default.measured is not None
    assert (default.measured.trial == 1) is fast_is_default
    if fast_is_default:
        assert default.min_vram_free_mb == peak_mb + VRAM_MARGIN_MB <= BUDGET_MB


def test_a_trial_feasible_under_the_old_rule_is_not_a_tier_it_cannot_be_selected_for(
    make_trial: MakeTrial,
) -> None:
    # A study made before the one rule stored peak - budget: this trial is "feasible" there, but
    # its tier would need a megabyte more than the budget and the app would skip it.
    trials = _edge_study(make_trial, EDGE_MB + 1, over_budget=False)
    profile = _build(trials)
    _assert_selectable(profile)
    assert 1 not in {t.measured.trial for t in profile.tiers if t.measured}


@pytest.mark.parametrize(
    ("study_peak", "confirmed_runs", "fast_is_default"),
    [
        (EDGE_MB - 50, [EDGE_MB - 60, EDGE_MB + 1], False),  # confirmed higher: across, out
        (EDGE_MB - 50, [EDGE_MB - 60, EDGE_MB], True),  # confirmed higher, still at the edge
        (EDGE_MB + 10, [EDGE_MB - 20, EDGE_MB - 10], True),  # confirmed lower: across, in
    ],
)
def test_confirmed_peaks_decide_the_tier(
    make_trial: MakeTrial, study_peak: float, confirmed_runs: list[float], fast_is_default: bool
) -> None:
    trials = _edge_study(make_trial, study_peak, over_budget=over_budget(study_peak))
    confirmed = {"1": confirmation(trials[1], confirmed_runs)}
    profile = _build(apply_confirmations(trials, confirmed), confirmed={1})
    _assert_selectable(profile)
    default = profile.tier(profile.default_tier)
    assert default.measured is not None and (default.measured.trial == 1) is fast_is_default
    if fast_is_default:
        assert default.min_vram_free_mb == max(confirmed_runs) + VRAM_MARGIN_MB


def test_a_confirmed_peak_over_the_edge_is_caught_whatever_constraint_was_stored(
    make_trial: MakeTrial,
) -> None:
    # The tier's need is re-checked on the confirmed peaks, not taken from the stored constraint
    # (here one written by the older peak - budget rule) nor from a vram_mb below the runs' max.
    trials = _edge_study(make_trial, EDGE_MB - 50, over_budget=False)
    c = confirmation(trials[1], [EDGE_MB - 60, EDGE_MB + 1])
    c["metrics"]["vram_mb"] = EDGE_MB - 60
    c["over_budget_mb"] = (EDGE_MB - 60) - BUDGET_MB
    profile = _build(apply_confirmations(trials, {"1": c}), confirmed={1})
    _assert_selectable(profile)
    assert 1 not in {t.measured.trial for t in profile.tiers if t.measured}


@pytest.mark.parametrize("fraction", [0.75, 0.5])
def test_lower_tiers_cap_the_need_at_their_fraction_of_the_budget(
    make_trial: MakeTrial, fraction: float
) -> None:
    cap = BUDGET_MB * fraction
    at_cap = cap - VRAM_MARGIN_MB
    trials = [
        make_trial(20, 900, 150, 0),
        make_trial(80, 200, EDGE_MB, 31, n_ctx=4096),
        make_trial(60, 300, at_cap + 1, 24),  # its need is 1 MB over the cap
        make_trial(50, 350, at_cap, 22),  # its need is the cap
    ]
    name = {0.75: "balanced", 0.5: "low_vram"}[fraction]
    profile = _build(trials, tier_fractions=(1.0, fraction))
    _assert_selectable(profile)
    tier = profile.tier(name)
    assert tier.measured is not None and tier.measured.trial == 3
    assert tier.min_vram_free_mb == cap


def test_every_export_near_the_boundary_keeps_the_default_tier_selectable(
    make_trial: MakeTrial,
) -> None:
    # Peaks within a few MB of each tier's edge; each export re-measures five of them a few MB
    # higher or lower. Whatever is picked, the tiers stay selectable under their caps.
    rng = random.Random(9)
    trials = [make_trial(20, 900, 150, 0)]
    edges = [BUDGET_MB * f - VRAM_MARGIN_MB for f in FRACTIONS.values()]
    for i in range(30):
        peak = rng.choice(edges) + rng.randint(-3, 3)
        tok_s, ttft = rng.uniform(30, 90), rng.uniform(100, 900)
        trials.append(
            make_trial(
                tok_s, ttft, peak, 10 + i % 22, n_batch=32 + i, over_budget=over_budget(peak)
            )
        )
    for _ in range(10):
        pick = rng.sample(trials[1:], 5)
        confirmed = {
            str(t.number): confirmation(
                t, [t.user_attrs["metrics"]["vram_mb"] + rng.randint(-3, 3) for _ in range(2)]
            )
            for t in pick
        }
        numbers = {t.number for t in pick}
        _assert_selectable(_build(apply_confirmations(trials, confirmed), confirmed=numbers))


@pytest.mark.parametrize(("spread_mb", "noted"), [(VRAM_MARGIN_MB / 2, False), (129.0, True)])
def test_a_confirmed_spread_over_half_the_margin_is_noted(
    make_trial: MakeTrial, spread_mb: float, noted: bool
) -> None:
    t = make_trial(80, 200, 5000, 31)
    confirmed = {str(t.number): confirmation(t, [5000.0, 5000.0 + spread_mb, 5010.0])}
    profile = _build(apply_confirmations([t], confirmed), confirmed={t.number})
    note = profile.tier("performance").note
    assert ("margin may be too small" in note) is noted
    if noted:
        assert f"spread by {spread_mb:.0f} MB" in note and "3 processes" in note


CONVERSATION = {
    "turns_kept": 10,
    "max_tokens": 512,
    "steady_state_tokens": 3500,
    "worst_case_tokens": 6900,
    "min_ctx": 2048,
    "min_ctx_rule": "user",
}


def test_a_profile_with_the_apps_conversation_is_version_2(gpu_trials: list[FrozenTrial]) -> None:
    profile = _build(gpu_trials, conversation=CONVERSATION)
    assert profile.version == 2
    assert profile.conversation is not None and profile.conversation.min_ctx == 2048
    assert "conversation:" in profile_to_yaml(profile)


def test_a_profile_without_a_conversation_stays_version_1(gpu_profile: Profile) -> None:
    assert gpu_profile.version == 1 and gpu_profile.conversation is None
    assert "conversation" not in profile_to_yaml(gpu_profile)


def test_a_tier_below_the_conversations_floor_is_refused(gpu_trials: list[FrozenTrial]) -> None:
    with pytest.raises(ProfileError, match="context floor"):
        _build(gpu_trials, conversation={**CONVERSATION, "min_ctx": 4096})


def test_a_tier_fraction_over_the_budget_is_refused(gpu_trials: list[FrozenTrial]) -> None:
    with pytest.raises(ProfileError, match="tier fractions"):
        _build(gpu_trials, tier_fractions=(1.2, 1.0))
