"""Launchers and specs: what a child reads is what the parent built, cold or pre-warmed."""

from __future__ import annotations

import json
from pathlib import Path

from objectives import phases
from objectives.launch import (
    ColdLauncher,
    PoolLauncher,
    TrialSpec,
    WarmPool,
    trial_launcher,
)
from objectives.probe import ProbeSpec
from objectives.soak_child import SoakSpec
from tests.conftest import stand_in

SPEC = TrialSpec.of(
    Path("/models/m.gguf"),
    {"n_threads": 1, "n_ctx": 512, "type_k": 8},
    {"prompt": "Bonjour", "next_prompt": None, "max_tokens": 8, "repeats": 2},
)


def test_a_trial_spec_is_the_dict_the_trial_child_reads() -> None:
    d = json.loads(json.dumps(SPEC.to_json_dict()))
    assert d == {
        "model_path": "/models/m.gguf",
        "params": {"n_threads": 1, "n_ctx": 512, "type_k": 8},
        "workload": {"prompt": "Bonjour", "next_prompt": None, "max_tokens": 8, "repeats": 2},
    }
    assert TrialSpec(**d) == SPEC  # nothing more, nothing less


def test_probe_and_soak_specs_are_the_dicts_their_children_read() -> None:
    probe = ProbeSpec("/m.gguf", ("a", "b"), smoke=False, smoke_params={"n_ctx": 256})
    assert json.loads(json.dumps(probe.to_json_dict())) == {
        "probe": True,  # objectives.child hands it to objectives.probe
        "model_path": "/m.gguf",
        "texts": ["a", "b"],
        "smoke": False,
        "smoke_params": {"n_ctx": 256},
    }
    soak = SoakSpec("/m.gguf", {"n_ctx": 512}, {"seed": 1}, 10, 60, False, 10, None, (10,))
    d = json.loads(json.dumps(soak.to_json_dict()))
    assert d["checkpoints"] == [10] and d["fit"] is None and d["chat"] == {"seed": 1}
    assert SoakSpec(**{**d, "checkpoints": tuple(d["checkpoints"])}) == soak


def test_cold_launcher_hands_a_fresh_child_the_spec_it_was_given() -> None:
    res = ColdLauncher(stand_in("echo_spec"), sample_gpu=False).run(SPEC, 60)
    assert res.status == "ok", res.reason + res.stderr_tail
    assert res.payload["spec"] == SPEC.to_json_dict() and not res.payload["prewarmed"]
    assert res.phase == phases.DONE
    probe = ProbeSpec("/m.gguf", ("a",), smoke_params={"n_batch": 32})
    res = ColdLauncher(stand_in("echo_spec")).run(probe, 60)
    assert res.payload["spec"] == probe.to_json_dict()


def test_pool_launcher_hands_a_prewarmed_child_the_spec_it_was_given() -> None:
    with WarmPool(list(stand_in("echo_spec"))) as pool:
        launcher = PoolLauncher(pool)
        for _ in range(2):  # the second child is the spare the first take started
            res = launcher.run(SPEC, 60)
            assert res.status == "ok", res.reason + res.stderr_tail
            assert res.payload == {"ok": True, "spec": SPEC.to_json_dict(), "prewarmed": True}
    assert pool._spare is None  # closed with the pool


def test_the_study_launcher_is_pooled_unless_a_custom_child_is_given() -> None:
    with trial_launcher(stand_in("canned")) as cold:
        assert isinstance(cold, ColdLauncher) and cold.argv == stand_in("canned")
    with trial_launcher() as pooled:
        assert isinstance(pooled, PoolLauncher)
        pool = pooled.pool
    assert pool._spare is None


def test_phase_markers_are_read_back_as_written() -> None:
    text = "noise\n" + "\n".join(phases.marker(p) for p in (phases.LOAD, phases.repeat(2)))
    assert phases.last_phase(text) == "repeat 2" and phases.is_measuring(phases.last_phase(text))
    assert phases.last_phase("no marker here") is None
    assert not phases.is_measuring(phases.LOADED)
