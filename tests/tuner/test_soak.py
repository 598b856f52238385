"""`dm-tune soak`: real chats with the demo GGUF in child processes, and its rules."""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from demo_profile import write_demo_profile
from typer.testing import CliRunner

from objectives.launch import ColdLauncher
from tuner.cli import app
from tuner.profile import load_profile
from tuner.profile.build import write_profile
from tuner.profile.soak import (
    Chat,
    Checkpoint,
    ContextBudget,
    TurnRecord,
    checkpoints_for,
    growth_of,
)
from tuner.profile.verify import verify_profile

runner = CliRunner()
# a stand-in trial child that answers at once with canned metrics (tests/stand_ins)
CANNED = [sys.executable, str(Path(__file__).resolve().parent.parent / "stand_ins" / "canned.py")]

WORKLOAD = (
    "version: 2\n"
    "system_prompt: Tu es Kira, une assistante virtuelle concise.\n"
    "history:\n"
    "  - user: Salut Kira !\n"
    '    assistant: "[joie] Salut ! Comment vas-tu ?"\n'
    "message: Tu peux me donner une idée de musique ?\n"
    "early_turns: 0\n"
)


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    p = tmp_path / "workload.yaml"
    p.write_text(WORKLOAD, encoding="utf-8")
    return p


def _soak(profile: Path, workload: Path, *extra: str) -> list[str]:
    return ["soak", str(profile), "--workload", str(workload), "--reply-tokens", "4", *extra]


def _row(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(name))


def with_keys(profile: Path, **keys: Any) -> Path:
    """The profile with `keys` added to every tier (as a tuned tier would carry them)."""
    p = load_profile(profile)
    tiers = [replace(t, llama=replace(t.llama, **keys)) for t in p.tiers]
    write_profile(profile, replace(p, tiers=tiers))
    return profile


@pytest.mark.slow
def test_soak_reports_memory_at_message_10_and_both_conversations(
    demo_model: Path, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50, n_ctx=2048)
    # 1 interaction of history keeps the test short (the window is full from message 1);
    # --max-tokens 64 so the app's worst case fits 2048.
    args = _soak(
        profile, workload, "--messages", "12", "--max-tokens", "64", "--history-turns", "1"
    )
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "tier cpu_fallback" in r.output  # the GPU tier can't fit: the app's own pick
    assert "warning:" not in r.output  # the demo tiers set only the app's five keys
    rows = {line.split()[0]: line for line in r.output.splitlines() if line[:1].isdigit()}
    assert set(rows) == {"10", "12"}  # the helper conversation's checkpoints
    # RSS always; VRAM "unknown" without an NVIDIA GPU (a real 0 MB with one: CPU tier)
    assert re.match(r"10\s+\d+ MB\s+(unknown|\d+ MB)\s+\d+ ms", rows["10"]), rows["10"]
    assert "memory: RSS" in r.output and "from message 10 to 12" in r.output
    assert re.search(r"^messages done\s+12/12\s+12/12$", r.output, re.M), r.output
    assert re.search(r"^overflow\s+none\s+none$", r.output, re.M), r.output
    # every turn is a steady-state one: both medians come from 12 turns
    steady = _row(r.output, "first token, steady")
    assert len(re.findall(r"\d+ ms \(\d+-\d+, 12 turns\)", steady)) == 2, steady
    assert re.search(r"app as is \d+ ms vs app \+ helper \d+ ms", r.output), r.output
    assert "<= n_ctx 2048: OK" in r.output and "finding:" not in r.output
    assert r.output.rstrip().endswith("PASS")


@pytest.mark.slow
def test_the_app_as_is_overflows_where_the_helper_keeps_the_history_within_n_ctx(
    demo_model: Path, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50, n_ctx=512)
    with_keys(profile, n_ubatch=64, flash_attn=False)
    # every reply 48 tokens: 5 interactions (~90 tokens each) no longer fit 512 with a reply
    args = [
        "soak",
        str(profile),
        "--workload",
        str(workload),
        "--messages",
        "6",
        "--reply-tokens",
        "48",
        "--long-replies",
        "--max-tokens",
        "128",
        "--history-turns",
        "6",
    ]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output  # the helper holds: the app's overflow is a finding
    assert (
        "warning: tier cpu_fallback sets flash_attn, n_ubatch: Desktop-Mate passes only "
        "n_gpu_layers, n_ctx, n_batch, n_threads, use_mlock to Llama(...); pass the whole tier"
    ) in r.output
    assert re.search(
        r"^Llama\(\.\.\.\) keys\s+5 \(the app's\)\s+7 \(the whole tier\)$", r.output, re.M
    )
    over = re.search(r"^overflow\s+at message (\d+)\s+none$", r.output, re.M)
    assert over, r.output
    n = int(over.group(1))
    assert 2 <= n <= 6
    assert re.search(rf"^messages done\s+{n - 1}/6\s+6/6$", r.output, re.M), r.output
    assert f"finding: the app as it is overflows at message {n} (prompt of" in r.output
    assert "add the helper: docs/desktop-mate.md" in r.output
    largest = _row(r.output, "largest prompt").split()
    assert int(largest[-2]) + 128 <= 512  # the helper left room for a max_tokens reply
    # long replies: the checkpoint reply really is 48 tokens (re-tokenized, +-2)
    last = next(line for line in r.output.splitlines() if line.startswith("6 "))
    assert abs(int(last.split()[-1]) - 48) <= 2, last
    assert r.output.rstrip().endswith("PASS")


@pytest.mark.slow
def test_an_n_ctx_too_small_even_for_the_helper_fails(
    demo_model: Path, workload: Path, tmp_path: Path
) -> None:
    profile = write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50, n_ctx=512)
    r = runner.invoke(app, _soak(profile, workload, "--messages", "2"))
    assert r.exit_code == 1, r.output
    # the workload's app.max_tokens (512) can't fit 512 with any prompt
    assert "> n_ctx 512: can overflow (not even an empty history fits)" in r.output
    assert "app + helper overflows at message 1: even without history" in r.output
    assert re.search(r"^overflow\s+none\s+at message 1$", r.output, re.M), r.output
    assert "memory: not checked" in r.output
    assert r.output.rstrip().endswith("FAIL: n_ctx overflow with the helper")


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


def test_steady_state_latency_uses_only_turns_with_a_full_window() -> None:
    def turn(i: int, ttft: float, steady: bool) -> TurnRecord:
        return TurnRecord(i, 3, 400, 60, ttft, steady)

    turns = (turn(1, 50, False), turn(2, 900, True), turn(3, 300, True), turn(4, 400, True))
    c = Chat("app as is", ("n_ctx",), 4, turns, (), 100.0, None, None, None, "", 400, 1.0)
    assert c.steady_ttft_ms == (900, 300, 400)
    assert c.ttft_summary() == "400 ms (300-900, 3 turns)"
    none = Chat("app as is", (), 1, turns[:1], (), 100.0, None, None, 2, "why", 500, 1.0)
    assert none.ttft_summary() == "no steady-state turn"


def test_soak_and_verify_warn_about_keys_beyond_the_apps_five(
    demo_model: Path, workload: Path, tmp_path: Path
) -> None:
    profile = with_keys(
        write_demo_profile(tmp_path / "p.yaml", demo_model, tok_s=50), type_k=8, n_ubatch=64
    )
    warning = (
        "tier cpu_fallback sets n_ubatch, type_k: Desktop-Mate passes only n_gpu_layers, "
        "n_ctx, n_batch, n_threads, use_mlock to Llama(...); pass the whole tier "
        "(docs/desktop-mate.md)"
    )
    lines: list[str] = []
    # the canned stand-in child answers at once: only verify's own output is under test
    report = verify_profile(
        profile, workload=workload, runs=1, launcher=ColdLauncher(CANNED), echo=lines.append
    )
    assert f"warning: {warning}" in lines and warning in report.warnings
    assert f"warning: {warning.replace('cpu_fallback', 'performance')}" in lines
