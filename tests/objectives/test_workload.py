from __future__ import annotations

from pathlib import Path

import pytest

from objectives.workload import Workload
from tuner.errors import UserError
from tuner.paths import default_config
from tuner.yaml_io import load_model


def test_default_workload_is_the_desktop_mate_format() -> None:
    w = load_model(default_config("workload.yaml"), Workload)
    p = w.prompt()
    assert p.startswith("<|system|>\nTu es Kira")
    assert p.endswith("</|user|>\n<|assistant|>\n")
    assert p.count("<|user|>") == len(w.history) + 1
    assert w.max_tokens == 128


def test_next_prompt_shares_the_prefix_of_the_first() -> None:
    w = load_model(default_config("workload.yaml"), Workload)
    nxt = w.next_prompt()
    assert nxt is not None
    shared = w.prompt()[: -len(w.template.generation_prefix)]
    assert nxt.startswith(shared)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("system_prompt: x\nmessage: y\nmax_token: 5\n")
    with pytest.raises(UserError, match="unknown key 'max_token'"):
        load_model(p, Workload)


def test_bad_range_is_rejected(tmp_path: Path) -> None:
    p = tmp_path / "w.yaml"
    p.write_text("system_prompt: x\nmessage: y\nmax_tokens: 0\n")
    with pytest.raises(UserError, match="max_tokens"):
        load_model(p, Workload)
