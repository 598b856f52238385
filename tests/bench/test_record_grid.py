"""scripts/record_grid.py end to end on the demo model: a space with fixed knobs, partial
results, --resume, and the replay of what it wrote."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import tuner.bench.record_grid as record_grid
from objectives.nvml import GpuInfo
from tuner.bench import replay_search
from tuner.machine import Hardware, Probe
from tuner.machine import detect as real_detect
from tuner.machine import run_probe as real_probe

# The GPU grid's shape on a small scale: everything fixed but flash_attn (and n_gpu_layers,
# which a CPU build fixes to 0): 2 cells.
SPACE = (
    "version: 1\n"
    "n_threads: {low: 1, high: 1}\n"
    "n_batch: {choices: [32]}\n"
    "n_ctx: {choices: [512]}\n"
    "use_mlock: {enabled: false}\n"
    "n_gpu_layers: {low: 0, high: auto}\n"
    "flash_attn: {enabled: true}\n"
)
FAST = ["--max-wait", "0", "--quiet", "inf", "--retries", "0", "--fixed", "use_mlock=true"]


@pytest.fixture
def grid_space(tmp_path: Path) -> Path:
    p = tmp_path / "grid_space.yaml"
    p.write_text(SPACE, encoding="utf-8")
    return p


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_cut_off_recording_keeps_its_cells_and_resume_completes_it(
    demo_model: Path, quick_workload: Path, grid_space: Path, tmp_path: Path
) -> None:
    out = tmp_path / "grid"
    base = [
        "--model", str(demo_model), "--workload", str(quick_workload),
        "--space", str(grid_space), "--out-dir", str(out), "--name", "g", *FAST,
    ]  # fmt: skip
    # --max-minutes 0: the time is up before the first run; the outputs still say so.
    assert record_grid.main([*base, "--max-minutes", "0"]) == 0
    meta = json.loads((out / "g.json").read_text(encoding="utf-8"))
    assert (meta["complete"], meta["cells_done"], meta["cells"]) == (False, 0, 2)
    assert meta["space"]["fixed"] == {"use_mlock": True}
    assert _rows(out / "g.csv") == []
    with pytest.raises(SystemExit, match="lacks 2 of the space's settings"):
        replay_search.main(["--grid", str(out / "g.csv"), "--space", str(grid_space)])

    assert record_grid.main([*base, "--resume", "--max-tokens", "4", "--no-next-turn"]) == 0
    meta = json.loads((out / "g.json").read_text(encoding="utf-8"))
    assert (meta["complete"], meta["cells_done"], meta["runs_total"]) == (True, 2, 2)
    assert (meta["workload"]["max_tokens"], meta["workload"]["next_turn"]) == (4, False)
    assert meta["quiet_threshold_cores"] is None
    rows = _rows(out / "g.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert {r["flash_attn"] for r in rows} == {"False", "True"}
    assert {(r["use_mlock"], r["n_threads"], r["n_gpu_layers"], r["vram_mb"]) for r in rows} == {
        ("True", "1", "0", "")  # no GPU here: no VRAM reading
    }
    assert all(float(r["gen_tok_s"]) > 0 and r["warm_ttft_ms"] == "" for r in rows)
    assert len(_rows(out / "g_runs.csv")) == 2

    res = tmp_path / "replay.json"
    args = ["--grid", str(out / "g.csv"), "--space", str(grid_space), "--seeds", "2"]
    assert replay_search.main([*args, "--samplers", "random", "--json", str(res)]) == 0
    assert "random|baselines|seeds=2" in json.loads(res.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_gpu_flag_with_a_faked_gpu_offloads_and_samples_vram(
    demo_model: Path,
    quick_workload: Path,
    grid_space: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No GPU on this machine: the probe and NVML's GPU list are faked to say there is one, so
    the grid offloads (n_gpu_layers 0..31 on the demo model; a CPU build runs them on the CPU)
    and each run samples VRAM (nothing to read here: empty)."""

    def probe(*args: Any, **kw: Any) -> Probe:
        return dataclasses.replace(real_probe(*args, **kw), gpu_offload=True)

    def detect() -> Hardware:
        gpu = GpuInfo(0, "Faked GPU", 8192.0, 8000.0, 192.0, "0", None)
        return dataclasses.replace(real_detect(), gpus=(gpu,))

    monkeypatch.setattr("tuner.bench.record_grid.run_probe", probe)
    monkeypatch.setattr("tuner.bench.record_grid.detect", detect)
    out = tmp_path / "grid"
    args = [
        "--gpu", "--model", str(demo_model), "--workload", str(quick_workload),
        "--space", str(grid_space), "--out-dir", str(out), "--limit", "2",
        "--fixed", "use_mlock=true",  # --gpu: no quiet waits or retries by default
    ]  # fmt: skip
    assert record_grid.main(args) == 0
    meta = json.loads((out / "gpu_grid.json").read_text(encoding="utf-8"))
    assert meta["gpu"] is True
    assert meta["space"]["machine"]["gpu_offload"] is True
    assert meta["space"]["axes"]["n_gpu_layers"] == list(range(32))
    assert meta["machine"]["gpu_details"][0]["name"] == "Faked GPU"
    assert meta["cells"] == 2 and "note" not in meta["machine"]
    assert (meta["quiet_threshold_cores"], meta["retries"]) == (None, 0)
    rows = _rows(out / "gpu_grid.csv")
    assert [(r["n_gpu_layers"], r["flash_attn"]) for r in rows] == [("0", "False"), ("0", "True")]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    runs = _rows(out / "gpu_grid_runs.csv")
    assert "vram_source" in runs[0]
    assert {r["waited_s"] for r in runs} == {"0.0"}


@pytest.mark.slow
def test_a_space_that_does_not_fit_the_machine_is_refused(
    demo_model: Path, quick_workload: Path, tmp_path: Path
) -> None:
    """n_threads fixed above the machine's cores (the GPU grid's 6 threads on a small machine)."""
    space = tmp_path / "s.yaml"
    space.write_text(SPACE.replace("{low: 1, high: 1}", "{low: 512, high: 512}"), "utf-8")
    args = ["--model", str(demo_model), "--workload", str(quick_workload), "--space", str(space)]
    with pytest.raises(SystemExit, match="does not fit this machine"):
        record_grid.main([*args, "--out-dir", str(tmp_path / "out")])
