"""Export of a real recorded study: docs/benchmarks/data/gpu/run5-pressure/13b-free.db (a 13B-class
model on an H200 under a 5544 MB budget, 51 trials, five of them confirmed in fresh processes),
copied into tmp_path so the recorded file is never touched."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from tuner.errors import UserError
from tuner.profile import load_profile
from tuner.profile.export import export_profile, study_profile
from tuner.study import StudyRecord, TrialRecord, load_existing_study

RECORDED = Path(__file__).resolve().parents[2] / "docs/benchmarks/data/gpu/run5-pressure"
STUDY = "13b-free"


@pytest.fixture
def url(tmp_path: Path) -> str:
    shutil.copy(RECORDED / f"{STUDY}.db", tmp_path / "study.db")
    return f"sqlite:///{tmp_path}/study.db"


@pytest.fixture
def study(url: str) -> optuna.Study:
    return load_existing_study(url, STUDY)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_the_written_profile_loads_as_the_study_profile(
    study: optuna.Study, url: str, tmp_path: Path
) -> None:
    lines: list[str] = []
    path = export_profile(
        study, prefer="balanced", out_dir=tmp_path / "out", storage=url, echo=lines.append
    )
    assert path == tmp_path / "out" / f"{STUDY}.yaml"
    profile = load_profile(path)
    assert profile.tiers == study_profile(study, prefer="balanced", storage=url).tiers
    assert f"Profile written: {path}" in lines
    assert lines[-1].endswith(f"Default tier: {profile.default_tier}.")


def test_the_default_tier_is_the_best_confirmed_trial(
    study: optuna.Study, url: str, tmp_path: Path
) -> None:
    confirmed = StudyRecord.from_study(study).confirmed
    ok = {int(n): c for n, c in confirmed.items() if c["status"] == "ok"}
    feasible = {n: c for n, c in ok.items() if c["over_budget_mb"] <= 0}
    best = max(feasible, key=lambda n: feasible[n]["values"][0])
    # the fastest is also the quickest to its first token: the best under any --prefer rule
    assert best == min(feasible, key=lambda n: feasible[n]["values"][1])

    path = export_profile(study, prefer="balanced", out_dir=tmp_path, storage=url, echo=print)
    profile = load_profile(path)
    default = profile.tier(profile.default_tier)
    assert default.measured is not None and default.measured.trial == best
    assert default.measured.gen_tok_s.median == pytest.approx(feasible[best]["values"][0])
    settings = TrialRecord.from_frozen(study.trials[best]).settings
    assert default.llama.kwargs() == settings


def test_tiers_are_ordered_by_the_free_vram_they_need_cpu_last(
    study: optuna.Study, url: str, tmp_path: Path
) -> None:
    profile = load_profile(
        export_profile(study, prefer="balanced", out_dir=tmp_path, storage=url, echo=print)
    )
    needs = [t.min_vram_free_mb for t in profile.tiers]
    assert len(needs) > 1 and needs == sorted(needs, reverse=True) and len(set(needs)) == len(needs)
    assert profile.tiers[-1].name == "cpu_fallback" and needs[-1] == 0
    assert profile.default_tier == profile.tiers[0].name
    assert needs[0] <= 5544.0  # the default tier fits the study's budget


def test_provenance_keeps_the_recorded_facts_and_masks_only_a_password(
    study: optuna.Study, url: str, tmp_path: Path
) -> None:
    profile = load_profile(
        export_profile(study, prefer="latency", out_dir=tmp_path, storage=url, echo=print)
    )
    p = profile.provenance
    record = StudyRecord.from_study(study)
    assert (p.gpu, p.driver) == ("NVIDIA H200", record.gpus[0]["driver"])
    assert p.cpu == "Intel(R) Xeon(R) Processor (16 threads)"
    assert p.llama_cpp_version == record.llama_cpp_version and p.study == STUDY
    assert p.storage == url  # a SQLite path has nothing to hide: kept whole
    assert p.trials == sorted(t.measured.trial for t in profile.tiers if t.measured is not None)
    assert (p.vram_budget_mb, p.prefer) == (5544.0, "latency")

    secret = "postgresql://tuner:s3cret@db.example:5432/studies"
    path = export_profile(
        study,
        prefer="latency",
        out_dir=tmp_path,
        output=tmp_path / "pg.yaml",
        storage=secret,
        echo=print,
    )
    assert load_profile(path).provenance.storage == "postgresql://tuner:***@db.example:5432/studies"
    assert "s3cret" not in path.read_text(encoding="utf-8")


def test_an_unknown_study_name_is_one_line_listing_the_studies(url: str) -> None:
    optuna.create_study(storage=url, study_name="other")
    with pytest.raises(UserError) as info:
        load_existing_study(url, "13b-fre")
    assert str(info.value) == f"no study named '13b-fre' in {url}; it has: {STUDY}, other"


def test_a_study_not_made_by_dm_tune_has_nothing_to_export(url: str) -> None:
    other = optuna.create_study(storage=url, study_name="other")
    with pytest.raises(UserError, match=r"^study 'other' was not made by dm-tune run; nothing"):
        study_profile(other, prefer="balanced", storage=url)


def test_an_output_folder_that_is_a_file_fails_without_writing_anything(
    study: optuna.Study, url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    blocker = out / "profiles"
    blocker.write_text("not a folder\n", encoding="utf-8")
    before = _files(out)
    lines: list[str] = []
    with pytest.raises(UserError) as info:
        export_profile(study, prefer="balanced", out_dir=blocker, storage=url, echo=lines.append)
    assert str(info.value).startswith(f"cannot write the profile to {blocker / STUDY}.yaml: ")
    assert "\n" not in str(info.value)
    assert _files(out) == before and lines == []


def test_a_failed_write_keeps_what_was_there_and_leaves_no_temporary_file(
    study: optuna.Study, url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / f"{STUDY}.yaml").mkdir(parents=True)  # the target is a folder: the rename fails
    (out / f"{STUDY}.yaml" / "keep.txt").write_text("mine\n", encoding="utf-8")
    before = _files(out)
    with pytest.raises(UserError, match=r"^cannot write the profile to "):
        export_profile(study, prefer="balanced", out_dir=out, storage=url, echo=print)
    assert _files(out) == before
