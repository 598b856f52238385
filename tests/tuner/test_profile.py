"""The profile file and the runtime selector, as Desktop-Mate uses them."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from profile_data import MakeTrial, write_cpu_profile

from objectives.metrics import VramSource
from objectives.nvml import list_gpus
from tuner.model_file import sha256_cached
from tuner.paths import cache_dir
from tuner.profile import (
    LlamaKeys,
    Profile,
    ProfileError,
    ProfileWarning,
    SchemaError,
    Stat,
    check_model,
    load_profile,
    quick_digest,
    select_profile,
    select_tier,
)
from tuner.profile import llm_profile as profile_mod


def test_importing_the_loader_pulls_in_no_heavy_library_and_no_other_dm_tune_module() -> None:
    code = (
        "import json, sys, tuner.profile; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'optuna', 'plotly', 'pydantic', 'objectives', 'tuner'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [
        "tuner",
        "tuner.history_fit",
        "tuner.profile",
        "tuner.profile.llm_profile",
    ]


def test_the_loaders_vram_sources_are_dm_tunes() -> None:
    """objectives.metrics keeps its own Literal until it imports the loader's (a later change)."""
    assert get_args(profile_mod.VramSource) == get_args(VramSource)


def test_write_then_load_round_trips(gpu_profile: Profile, profile_path: Path) -> None:
    assert load_profile(profile_path) == gpu_profile
    text = profile_path.read_text(encoding="utf-8")
    assert text.startswith("# Desktop-Mate LLM profile for model.gguf")
    assert "dm-tune run" in text and "dm-tune export" in text
    assert "flash_attn: null" not in text  # unset knobs keep llama-cpp-python's defaults
    assert [p.name for p in profile_path.parent.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("free_mb", "tier"),
    [
        (24000, "performance"),
        (5256, "performance"),
        (5255, "balanced"),
        (4256, "balanced"),
        (3000, "low_vram"),
        (2755, "cpu_fallback"),
        (0, "cpu_fallback"),
    ],
)
def test_select_picks_the_fastest_tier_that_fits(
    profile_path: Path, free_mb: float, tier: str
) -> None:
    assert select_tier(profile_path, free_mb).name == tier
    keys = select_profile(profile_path, free_mb)
    assert keys == load_profile(profile_path).tier(tier).llama.kwargs()


def test_select_without_a_gpu_reads_nvml_and_takes_the_cpu_tier(profile_path: Path) -> None:
    if list_gpus():
        pytest.skip("this machine has an NVIDIA GPU")
    assert select_profile(profile_path)["n_gpu_layers"] == 0


def test_fake_gpu_free_vram_from_nvml_picks_the_tier(
    profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile_mod, "_gpu_free_mb", lambda: [4800.0])
    monkeypatch.setattr(profile_mod, "_llama_can_offload", lambda: True)
    assert select_tier(profile_path).name == "balanced"


def test_fake_gpu_with_a_cpu_build_of_llama_cpp_warns_and_takes_the_cpu_tier(
    profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(profile_mod, "_gpu_free_mb", lambda: [6000.0])
    monkeypatch.setattr(profile_mod, "_llama_can_offload", lambda: False)
    with pytest.warns(RuntimeWarning, match="cannot offload"):
        assert select_tier(profile_path).name == "cpu_fallback"


def _tamper(path: Path, edit: object) -> Path:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_keys_a_newer_dm_tune_adds_outside_llama_are_skipped_with_one_warning(
    profile_path: Path,
) -> None:
    # A copy of this loader vendored in the app must read a newer dm-tune's profile of the same
    # version: those keys only describe (quick_digest and vram_source came that way).
    def newer(d: dict[str, Any]) -> None:
        d.update(colour="blue")
        d["model"]["arch"] = "llama"
        d["provenance"]["os"] = "Windows 11"
        d["tiers"][0]["power_w"] = 40
        d["tiers"][0]["measured"]["tok_per_joule"] = 2.0
        d["tiers"][0]["measured"]["gen_tok_s"]["p90"] = 78.0

    _tamper(profile_path, newer)
    with pytest.warns(ProfileWarning) as caught:
        profile = load_profile(profile_path)
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith(f"{profile_path}: skipped ") and "\n" not in message
    for key in (
        "colour",
        "model.arch",
        "provenance.os",
        "tiers.0.power_w",
        "tiers.0.measured.tok_per_joule",
        "tiers.0.measured.gen_tok_s.p90",
    ):
        assert repr(key) in message
    assert profile.tiers[0].measured is not None
    assert profile.tiers[0].measured.gen_tok_s.median == 80


def test_a_profile_with_only_known_keys_loads_without_a_warning(profile_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_profile(profile_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["tiers"][0]["llama"].update(n_gpu_layer=33),
            "unknown key 'tiers.0.llama.n_gpu_layer'; remove it or fix its spelling",
        ),
        (lambda d: d["tiers"][0]["llama"].update(n_ctx="4096"), "'tiers.0.llama.n_ctx':"),
        (lambda d: d["tiers"][0]["llama"].update(n_ctx=4096.0), "'tiers.0.llama.n_ctx':"),
        (lambda d: d["tiers"][1]["llama"].update(use_mlock=1), "'tiers.1.llama.use_mlock':"),
        (lambda d: d["tiers"][0]["llama"].pop("n_batch"), "missing key 'tiers.0.llama.n_batch'"),
        (lambda d: d["model"].update(sha256="xyz"), "'model.sha256':"),
        (lambda d: d.update(version=3), "profile version 3 is not supported"),
        (lambda d: d.pop("version"), "profile version None is not supported"),
        (lambda d: d["tiers"].reverse(), "ordered by decreasing min_vram_free_mb"),
        (lambda d: d["tiers"].pop(), "the last tier must be the CPU tier"),
        (lambda d: d.update(default_tier="turbo"), "default_tier 'turbo' is not one of"),
        (lambda d: d.update(quality_affecting=["type_q"]), "unknown knob 'type_q'"),
        (lambda d: d["tiers"][0].update(min_vram_free_mb=float("inf")), "finite number"),
        (lambda d: d["tiers"][0].update(min_vram_free_mb=float("nan")), "finite number"),
        (lambda d: d["tiers"][0].update(min_vram_free_mb=-1), "'tiers.0.min_vram_free_mb':"),
        (lambda d: d["tiers"][0]["llama"].update(n_ctx=0), "'tiers.0.llama.n_ctx': must be at"),
        (lambda d: d["tiers"][0]["llama"].update(n_gpu_layers=-2), "'tiers.0.llama.n_gpu_lay"),
        (lambda d: d["tiers"][0].update(name="fast tier"), "'tiers.0.name':"),
        (lambda d: d["tiers"][0].update(measured={}), "missing key 'tiers.0.measured.trial'"),
        (lambda d: d["tiers"][0]["measured"]["ttft_ms"].update(cv="x"), "measured.ttft_ms.cv'"),
        (lambda d: d["tiers"][1].update(name="performance"), "tier names must be unique"),
        (lambda d: d.update(tiers=[]), "'tiers': expected at least one tier"),
        (lambda d: d.update(tiers={}), "'tiers': expected a list"),
        (lambda d: d.update(version=True), "profile version True is not supported"),
        (lambda d: d["model"].update(quick_digest="12"), "'model.quick_digest':"),
        (lambda d: d["model"].update(file=""), "'model.file':"),
        (lambda d: d["provenance"].update(created="yesterday"), "'provenance.created':"),
        (lambda d: d["provenance"].update(prefer="fastest"), "'provenance.prefer':"),
        (lambda d: d["provenance"].update(trials=[1, "2"]), "'provenance.trials.1':"),
        (lambda d: d.update(model=[]), "'model': expected a mapping of keys"),
    ],
)
def test_tampered_profile_is_refused_with_a_one_line_message(
    profile_path: Path, edit: object, message: str
) -> None:
    _tamper(profile_path, edit)
    with pytest.raises(ProfileError) as exc:
        load_profile(profile_path)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith(str(profile_path))


def test_a_python_tag_is_refused_and_never_runs(profile_path: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    text = profile_path.read_text(encoding="utf-8").replace(
        "default_tier:", f"x: !!python/object/apply:os.system ['touch {marker}']\ndefault_tier:"
    )
    profile_path.write_text(text, encoding="utf-8")
    with pytest.raises(ProfileError, match="YAML tags are not allowed") as exc:
        load_profile(profile_path)
    assert "!!python/object/apply:os.system" in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists()


def test_a_profile_above_1_mb_is_refused_before_parsing(tmp_path: Path) -> None:
    """A YAML parser takes tens of seconds on a 60 MB file; the size alone refuses it."""
    big = tmp_path / "big.yaml"
    big.write_text("version: 2\n" + "# padding\n" * 120_000, encoding="utf-8")
    with pytest.raises(ProfileError, match="larger than 1 MB"):
        load_profile(big)
    big.write_text("[" * 2_000_000, encoding="utf-8")  # would exhaust the parser
    with pytest.raises(ProfileError, match="larger than 1 MB"):
        load_profile(big)


def test_broken_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ntiers: [\n", encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid YAML at line"):
        load_profile(bad)
    with pytest.raises(ProfileError, match="profile not found"):
        load_profile(tmp_path / "none.yaml")


def _profile_for(model: Path, make_trial: MakeTrial, tmp_path: Path) -> Path:
    return write_cpu_profile(model, make_trial, tmp_path / "profile.yaml")


def test_a_profile_for_another_model_file_is_refused_unless_forced(
    make_trial: MakeTrial, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF model A")
    path = _profile_for(model, make_trial, tmp_path)
    assert select_profile(path, 0, model_path=model)["n_gpu_layers"] == 0

    model.write_bytes(b"GGUF model B")  # same size, other content: only a digest tells
    with pytest.raises(ProfileError, match=r"measured with model\.gguf \(sha256 "):
        select_profile(path, 0, model_path=model)
    other = tmp_path / "other.gguf"
    other.write_bytes(b"a larger GGUF file")
    with pytest.raises(ProfileError, match=r"not other\.gguf; regenerate it for this model"):
        select_profile(path, 0, model_path=other)
    assert select_profile(path, 0, model_path=other, force=True)["n_gpu_layers"] == 0
    with pytest.raises(ProfileError, match="model file not found"):
        select_profile(path, 0, model_path=tmp_path / "gone.gguf")


def test_selected_keys_load_in_real_llama_cpp(
    demo_model: Path, make_trial: MakeTrial, tmp_path: Path
) -> None:
    from llama_cpp import Llama

    path = _profile_for(demo_model, make_trial, tmp_path)
    keys = select_profile(path, model_path=demo_model)
    llm = Llama(model_path=str(demo_model), **keys, verbose=False)
    assert llm.n_ctx() == 512
    llm.close()


CONVERSATION = {
    "turns_kept": 10,
    "max_tokens": 512,
    "steady_state_tokens": 1900,
    "worst_case_tokens": 6650,
    "min_ctx": 2048,
    "min_ctx_rule": "user",
}


def test_the_loader_reads_version_1_and_version_2(profile_path: Path) -> None:
    assert load_profile(profile_path).version == 1  # an older profile: no conversation
    _tamper(profile_path, lambda d: d.update(version=2, conversation=dict(CONVERSATION)))
    p = load_profile(profile_path)
    assert p.version == 2 and p.conversation is not None and p.conversation.min_ctx == 2048


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(version=2), "a version 2 profile needs its 'conversation'"),
        (
            lambda d: d.update(version=2, conversation={**CONVERSATION, "min_ctx": 4096}),
            "has n_ctx below the profile's context floor (4096)",
        ),
        (
            lambda d: d.update(version=2, conversation={**CONVERSATION, "min_ctx_rule": "x"}),
            "'conversation.min_ctx_rule'",
        ),
    ],
)
def test_a_version_2_profile_keeps_its_context_floor(
    profile_path: Path, edit: object, message: str
) -> None:
    _tamper(profile_path, edit)
    with pytest.raises(ProfileError, match=message.replace("(", "\\(").replace(")", "\\)")):
        load_profile(profile_path)


def test_the_measured_vram_source_is_kept_and_older_profiles_without_it_load(
    profile_path: Path,
) -> None:
    assert {t.measured.vram_source for t in load_profile(profile_path).tiers if t.measured} == {
        "process"
    }
    old = Path(__file__).resolve().parents[2] / "docs/benchmarks/data/gpu/profile-h200.yaml"
    assert "vram_source" not in old.read_text(encoding="utf-8")  # written before the field
    assert all(
        t.measured is None or t.measured.vram_source is None for t in load_profile(old).tiers
    )
    _tamper(profile_path, lambda d: d["tiers"][0]["measured"].update(vram_source="guess"))
    with pytest.raises(ProfileError, match=r"'tiers\.0\.measured\.vram_source'") as exc:
        load_profile(profile_path)
    assert "\n" not in str(exc.value)


def _model(tmp_path: Path, size: int, fill: bytes) -> Path:
    path = tmp_path / "big.gguf"
    with path.open("wb") as fh:
        fh.write(b"GGUF" + fill * (size - 4))
    return path


def test_quick_digest_reads_both_ends_and_the_size(tmp_path: Path) -> None:
    span = profile_mod.QUICK_DIGEST_SPAN
    path = _model(tmp_path, 3 * span, b"a")
    d = quick_digest(path)
    assert len(d) == 64 and d == quick_digest(path)
    for at in (0, 3 * span - 1):  # a byte changed in the first or the last MiB
        data = bytearray(path.read_bytes())
        data[at] ^= 1
        other = tmp_path / "other.gguf"
        other.write_bytes(bytes(data))
        assert quick_digest(other) != d
    middle = bytearray(path.read_bytes())
    middle[span + 5] ^= 1  # the middle is not read: the full sha256 (dm-tune verify) tells
    (tmp_path / "middle.gguf").write_bytes(bytes(middle))
    assert quick_digest(tmp_path / "middle.gguf") == d
    assert quick_digest(_model(tmp_path, 10, b"a")) != quick_digest(_model(tmp_path, 11, b"a"))


def test_the_apps_model_check_writes_no_cache(make_trial: MakeTrial, tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF model A")
    path = _profile_for(model, make_trial, tmp_path)
    assert select_profile(path, 0, model_path=model)["n_gpu_layers"] == 0
    assert not cache_dir().exists()


def _without_quick_digest(path: Path) -> Path:
    return _tamper(path, lambda d: d["model"].pop("quick_digest"))


def test_an_older_profile_without_a_quick_digest_is_checked_by_size_and_verify_by_sha256(
    make_trial: MakeTrial, tmp_path: Path
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF model A")
    path = _without_quick_digest(_profile_for(model, make_trial, tmp_path))
    profile = load_profile(path)
    assert profile.model.quick_digest is None
    model.write_bytes(b"GGUF model B")  # same size: the app can't tell without the digest
    check_model(profile, model)
    with pytest.raises(ProfileError, match=r"measured with model\.gguf"):
        check_model(profile, model, full_sha256=sha256_cached)  # dm-tune verify's check
    model.write_bytes(b"GGUF model AB")
    with pytest.raises(ProfileError, match="regenerate it for this model"):
        check_model(profile, model)


def test_the_builders_dataclasses_check_what_they_are_given() -> None:
    """The builder makes the profile through the loader's classes: no second schema."""
    with pytest.raises(SchemaError) as exc:
        Stat(median=float("inf"), cv=0.0)
    assert exc.value.where == "median" and "finite" in exc.value.problem
    with pytest.raises(SchemaError, match="'n_ctx': expected an integer"):
        LlamaKeys(n_gpu_layers=0, n_ctx=True, n_batch=1, n_threads=1, use_mlock=False)
    with pytest.raises(SchemaError, match=r"unknown key 'llama\.n_gpu_layer'"):
        LlamaKeys.from_dict({"n_gpu_layer": 1}, ("llama",))
    assert Stat(median=3, cv=0).median == 3.0 and isinstance(Stat(median=3, cv=0).cv, float)


def test_to_dict_reads_back_to_the_same_profile(gpu_profile: Profile) -> None:
    data: dict[str, Any] = gpu_profile.to_dict()
    assert Profile.from_dict(data) == gpu_profile
    assert "quick_digest" not in data["model"] and "conversation" not in data
    assert all(None not in t["llama"].values() for t in data["tiers"])
    tiers = zip(data["tiers"], gpu_profile.tiers, strict=True)
    notes = [("note" in t, bool(tier.note)) for t, tier in tiers]
    assert all(kept == set_ for kept, set_ in notes) and (False, False) in notes  # empty: left out
