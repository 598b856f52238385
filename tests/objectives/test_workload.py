from __future__ import annotations

from pathlib import Path

import pytest

from objectives.workload import Workload
from tuner.errors import UserError
from tuner.paths import default_config
from tuner.yaml_io import load_model


def _default() -> Workload:
    return load_model(default_config("workload.yaml"), Workload)


def test_default_workload_is_the_apps_steady_state_turn() -> None:
    w = _default()
    p = w.prompt()
    assert p.startswith("<|system|>\nTu es Kira")
    assert p.endswith("</|user|>\n<|assistant|>\n")
    assert w.app.turns_kept == 10 and w.app.max_tokens == 512
    assert len(w.history) >= w.app.turns_kept
    # the steady-state turn carries exactly the app's window of interactions
    assert p.count("<|user|>") == w.app.turns_kept + 1
    assert w.gen_tokens == 128


def test_next_turn_is_the_slid_window_sharing_only_the_system_prompt() -> None:
    w = _default()
    nxt = w.next_prompt()
    assert nxt is not None
    system = w.template.system.format(text=w.system_prompt)
    first_user = w.template.user.format(text=w.history[-w.app.turns_kept].user)
    assert w.prompt().startswith(system + first_user)
    assert nxt.startswith(system)
    assert not nxt.startswith(system + first_user)  # the oldest interaction left the window
    assert nxt.count("<|user|>") == w.app.turns_kept + 1
    assert w.message in nxt and nxt.endswith(
        w.template.user.format(text="Parfait. Et si j'ai encore du temps après, je fais quoi ?")
        + w.template.generation_prefix
    )


def test_early_turn_and_trimmed_turns() -> None:
    w = _default()
    early = w.early_prompt()
    assert early is not None
    assert early.count("<|user|>") == w.early_turns + 1
    assert w.prompt(0).count("<|user|>") == 1
    assert w.prompt(3).count("<|user|>") == 4
    assert w.prompt(3).endswith(w.template.user.format(text=w.message) + "<|assistant|>\n")
    skeleton = w.worst_case_skeleton()
    assert len(skeleton) < len(w.prompt())
    assert skeleton.count("<|assistant|>\n</|assistant|>") == w.app.turns_kept


def test_spec_measures_extra_turns_only_when_asked() -> None:
    w = _default()
    plain = w.spec()
    assert plain["next_prompt"] is None and plain["early_prompt"] is None
    assert plain["history_turns"] == w.app.turns_kept
    full = w.spec(next_turn=True, early_turn=True)
    assert full["next_prompt"] == w.next_prompt() and full["early_prompt"] == w.early_prompt()
    assert w.spec(turns=4)["history_turns"] == 4


def test_a_history_shorter_than_the_window_is_sent_whole() -> None:
    w = Workload(
        system_prompt="s",
        message="m",
        history=({"user": "u1", "assistant": "a1"}, {"user": "u2", "assistant": "a2"}),  # type: ignore[arg-type]
        early_turns=1,
    )
    assert w.prompt().count("<|user|>") == 3


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("system_prompt: x\nmessage: y\nmax_token: 5\n")
    with pytest.raises(UserError, match="unknown key 'max_token'"):
        load_model(p, Workload)


def test_a_version_1_workload_is_refused_with_the_fix(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("version: 1\nsystem_prompt: x\nmessage: y\n")
    with pytest.raises(UserError, match="version 1 is not supported"):
        load_model(p, Workload)


def test_bad_range_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("system_prompt: x\nmessage: y\ngen_tokens: 0\n")
    with pytest.raises(UserError, match="gen_tokens"):
        load_model(p, Workload)
