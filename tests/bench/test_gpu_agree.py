"""scripts/gpu_agree.py (issue 14's two-GPU agreement check), on CPU: the plan from a recorded
GPU study, the comparison from a recorded anchors results file, and its one-line errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import tuner.bench.anchors as anchors
from tuner.bench.gpu_agree import compare, main, plan_from_study, render

ROOT = Path(__file__).resolve().parent.parent.parent
STUDY = ROOT / "docs" / "benchmarks" / "data" / "gpu" / "run5-pressure" / "7b-free.db"
RECORDED = ROOT / "tests" / "data" / "anchors_results_cpu_demo.json"


def test_plan_holds_the_studys_top_candidates_as_anchors_reads_them(tmp_path: Path) -> None:
    storage = f"sqlite:///{STUDY}"
    plan = plan_from_study(storage, None, 3, None)
    names = [s["name"] for s in plan["settings"]]
    assert len(names) == 3 and len(set(names)) == 3 and all(n.startswith("trial ") for n in names)
    llama = [s["llama"] for s in plan["settings"]]
    assert all(d["n_ctx"] >= 4096 and "n_gpu_layers" in d for d in llama)
    assert len({json.dumps(d, sort_keys=True) for d in llama}) == 3  # distinct settings
    out = tmp_path / "plan.json"
    assert main(["plan", "--storage", storage, "--top", "3", "--out", str(out)]) == 0
    assert anchors.load_plan(out)["settings"] == plan["settings"]  # what `measure` reads


def test_compare_reports_the_largest_difference_against_5_percent() -> None:
    a = anchors.load_results(RECORDED)
    b = copy.deepcopy(a)
    b["summary"]["dm-tune"]["gen_tok_s"]["median"] *= 1.10  # GPU 1 measures one setting 10 % up
    rows = compare(a, b)
    assert [r.setting for r in rows] == [s["name"] for s in a["plan"]["settings"]]
    dm = next(r for r in rows if r.setting == "dm-tune")
    assert dm.diff_pct["gen_tok_s"] == pytest.approx(10 / 1.05, rel=1e-6)
    assert dm.diff_pct["ttft_ms"] == 0.0
    text = render(rows, "GPU 0", "GPU 1")
    assert "gen tok/s: largest difference 9.5 %" in text and "(NOT within 5 %)" in text
    assert "cold TTFT ms: largest difference 0.0 %" in text
    same = render(compare(a, a), "GPU 0", "GPU 1")
    assert "(within 5 %)" in same and "NOT" not in same


def test_bad_input_is_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "agree.md"
    assert main(["compare", "--results", str(RECORDED), "--out", str(out)]) == 2
    other = tmp_path / "other.json"
    r = json.loads(RECORDED.read_text())
    r["plan"]["settings"] = r["plan"]["settings"][:2]
    other.write_text(json.dumps(r))
    args = ["compare", "--results", str(RECORDED), "--results", str(other), "--out", str(out)]
    assert main(args) == 2
    missing = tmp_path / "none.db"
    assert main(["plan", "--storage", f"sqlite:///{missing}", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err), err
    assert "give --results twice" in err[0] and "different plans" in err[1]
    assert not out.exists() and not missing.exists()
