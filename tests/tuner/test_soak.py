"""`dm-tune soak`: a real chat with the demo GGUF in one child process, and its rules."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from demo_profile import write_demo_profile
from typer.testing import CliRunner

from tuner.cli import app
from tuner.soak import Checkpoint, ContextBudget, checkpoints_for, growth_of

runner = CliRunner()

WORKLOAD = (
    "version: 1\n"
    "system_prompt: Tu es Kira, une assistante virtuelle concise.\n"
    "history:\n"
    "  - user: Salut Kira !\n"
    '    assistant: "[joie] Salut ! Comment vas-tu ?"\n'
    "message: Tu peux me donner une idée de musique ?\n"
)


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    p = tmp_path / "workload.yaml"
    p.write_text(WORKLOAD, encoding="utf-8")
    return p


def _soak(profile: Path, workload: Path, *extra: str) -> list[str]:
    return ["soak", str(profile), "--workload", str(workload), "--reply-tokens", "4", *extra]


@pytest.mark.slow
def test_soak_reports_memory_at_message_10_and_the_context_check(
    demo_model: Path, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50, n_ctx=2048)
    # 1 turn of history keeps the test short; --max-tokens 64 so the worst case fits 2048.
    args = _soak(
        profile, workload, "--messages", "12", "--max-tokens", "64", "--history-turns", "1"
    )
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "tier cpu_fallback" in r.output  # the GPU tier can't fit: the app's own pick
    rows = {line.split()[0]: line for line in r.output.splitlines() if line[:1].isdigit()}
    assert set(rows) == {"10", "12"}
    # RSS always; VRAM "unknown" without an NVIDIA GPU (a real 0 MB with one: CPU tier)
    assert re.match(r"10\s+\d+ MB\s+(unknown|\d+ MB)\s+\d+ ms", rows["10"]), rows["10"]
    assert "memory: RSS" in r.output and "from message 10 to 12" in r.output
    assert "<= n_ctx 2048: OK" in r.output and r.output.rstrip().endswith("PASS")


@pytest.mark.slow
def test_an_n_ctx_too_small_for_the_apps_history_is_flagged(
    demo_model: Path, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50, n_ctx=512)
    r = runner.invoke(app, _soak(profile, workload, "--messages", "2"))
    assert r.exit_code == 1, r.output
    assert "> n_ctx 512: OVERFLOW" in r.output
    assert "not even an empty history fits" in r.output  # 512 prompt + 512 reply > 512
    assert "memory: not checked" in r.output
    assert r.output.rstrip().endswith("FAIL: n_ctx overflow")


def test_unknown_tier_is_a_user_error(demo_model: Path, workload: Path, tmp_path: Path) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50)
    r = runner.invoke(app, _soak(profile, workload, "--tier", "turbo"))
    assert r.exit_code == 2 and "no tier named 'turbo'" in r.stderr


def test_worst_case_prompt_and_the_turns_that_fit() -> None:
    c = ContextBudget(
        n_ctx=4096,
        max_tokens=512,
        history_turns=10,
        system_tokens=180,
        user_tokens_max=40,
        assistant_tag_tokens=14,
        generation_prefix_tokens=6,
    )
    assert c.turn_tokens == 566
    assert c.worst_case_tokens == 180 + 10 * 566 + 40 + 6 + 512
    assert c.overflows and c.turns_that_fit == 5  # 6 turns: 180 + 6 * 566 + 558 = 4134 > 4096
    assert not ContextBudget(8192, 512, 10, 180, 40, 14, 6).overflows


def test_checkpoints() -> None:
    assert checkpoints_for(12) == [10, 12]
    assert checkpoints_for(100) == [10, 50, 100]
    assert checkpoints_for(250) == [10, 50, 100, 200, 250]
    assert checkpoints_for(5) == [5]


# Memory readings made up: a leak can't be produced on demand with a real model.
def test_growth_beyond_5_percent_plus_50_mb_is_a_suspected_leak_fake_readings() -> None:
    def cp(message: int, rss: float, vram: float | None) -> Checkpoint:
        return Checkpoint(message, rss, vram, 100.0, 1.0, 500, 60)

    steady = growth_of((cp(10, 1000, 4000), cp(50, 1040, 4000), cp(100, 1090, 4100)))
    assert [g.what for g in steady] == ["RSS", "VRAM"] and not any(g.leak for g in steady)
    leaking = growth_of((cp(10, 1000, None), cp(100, 1101, None)))
    assert [g.what for g in leaking] == ["RSS"] and leaking[0].leak  # 101 > 50 + 50
    assert growth_of((cp(8, 1000, None),)) == ()
