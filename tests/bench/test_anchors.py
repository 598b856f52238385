"""scripts/anchors.py: Ollama's rule, llama.cpp's fit answer, the plan, a real interleaved
measurement on the demo model (CPU) and the table from a recorded results file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil
import pytest

import tuner.bench.anchors as anchors
from objectives.launch import ChildResult, ColdLauncher, TrialSpec
from tuner.bench.make_gguf import write_llama_gguf
from tuner.errors import UserError
from tuner.vram import read_gguf

ROOT = Path(__file__).resolve().parent.parent.parent
PROFILE = ROOT / "docs" / "benchmarks" / "data" / "cpu-demo-profile-3.yaml"  # demo, n_ctx 4096
RECORDED = ROOT / "tests" / "data" / "anchors_results_cpu_demo.json"
CORES = anchors.Cores(logical=16, physical=8)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory, demo_model: Path) -> Path:
    """8 blocks x 256, Q4_0: ~70 MB with its 49k-token vocabulary, layers of known size."""
    path = tmp_path_factory.mktemp("gguf") / "s8.gguf"
    return write_llama_gguf(
        path, blocks=8, hidden=256, ffn=512, heads=8, kv_heads=4, context_length=8192,
        tokenizer_from=demo_model,
    )  # fmt: skip


# --- llama.cpp's fit answer ----
def test_fit_answer_is_parsed_with_logs_and_extra_flags() -> None:
    assert anchors.parse_fit_answer("-c 4096 -ngl 18\n") == {
        "n_ctx": 4096,
        "n_gpu_layers": 18,
        "extra": [],
    }
    text = (
        "llama_params_fit: projected use 5000 MiB\nllama_fit_params: printing fitted CLI "
        'arguments to stdout...\n-c 4096 -ngl 33 -ts 20,13 -ot "blk\\.3.*=CPU"\n'
    )
    fit = anchors.parse_fit_answer(text)
    assert (fit["n_ctx"], fit["n_gpu_layers"]) == (4096, 33)
    assert fit["extra"] == ["-ts", "20,13", "-ot", "blk\\.3.*=CPU"]


@pytest.mark.parametrize("text", ["", "failed to fit CLI arguments to free memory", "-ngl 18"])
def test_bad_fit_answer_is_one_clear_error(text: str) -> None:
    with pytest.raises(UserError, match="no '-c N -ngl K' line") as e:
        anchors.parse_fit_answer(text)
    assert "\n" not in str(e.value)


# --- Ollama's rule ----
def test_ollama_default_context_by_total_vram() -> None:
    assert anchors.ollama_default_num_ctx(6144) == 4096
    assert anchors.ollama_default_num_ctx(23 * 1024 - 1) == 4096
    assert anchors.ollama_default_num_ctx(24 * 1024) == 32768
    assert anchors.ollama_default_num_ctx(143771) == 262144


def test_ollama_on_the_demo_model(demo_model: Path) -> None:
    info = read_gguf(demo_model)
    full = anchors.ollama_choice(demo_model, 5544, 6144, 4096)
    assert full["n_gpu_layers"] == info.offloadable_layers  # 135M params: everything fits
    assert full["n_ctx"] == 4096 and full["n_batch"] == full["n_ubatch"] == 512
    assert full["flash_attn"] is False and full["use_mlock"] is False  # llama arch: FA off
    assert "457 MiB" in full["why"]
    assert anchors.ollama_choice(demo_model, 400, 6144, 4096)["n_gpu_layers"] == 0
    # the H200's total memory: 256k by default, capped at the trained context (8192)
    big = anchors.ollama_choice(demo_model, 5544, 143771, 4096)
    assert big["n_ctx"] == info.context_length and "capped" in big["why"]
    # a floor above the default raises it, and says so
    raised = anchors.ollama_choice(demo_model, 5544, 6144, 8192)
    assert raised["n_ctx"] == 8192 and "floor" in raised["why"]


def test_ollama_layers_grow_with_free_memory(synthetic: Path) -> None:
    info = read_gguf(synthetic)
    sizes = anchors.ollama_sizes(info, 4096, 512)
    reserve = anchors.OLLAMA_CUDA_MINIMUM_MEMORY
    counts = [
        anchors.ollama_layers(sizes, reserve + extra * 1024 * 1024)[0] for extra in range(0, 400, 5)
    ]
    assert counts == sorted(counts), "more free memory never gives fewer layers"
    assert counts[0] == 0 and counts[-1] == info.offloadable_layers
    assert len({c for c in counts if 0 < c < info.offloadable_layers}) > 0  # partial offloads
    assert anchors.ollama_layers(sizes, reserve - 1)[0] == 0  # below the reserve: none
    # the per-layer size it uses: blk.i's tensors + the KV cache shared out per block
    blk0 = sum(t.n_bytes for t in info.tensors if t.name.startswith("blk.0."))
    assert sizes.layer_bytes[0] == blk0
    assert sizes.kv == 4096 * 8 * (32 + 32) * 4 * 2


def test_ollama_choice_is_monotonic_on_a_synthetic_model(synthetic: Path) -> None:
    got = [
        anchors.ollama_choice(synthetic, free, 6144, 4096)["n_gpu_layers"]
        for free in (0, 300, 457, 500, 520, 540, 560, 600, 700, 900, 5544)
    ]
    assert got == sorted(got) and got[0] == 0 and got[-1] == 9


# --- llama.cpp's thread count ----
def test_llama_cpp_threads_are_the_physical_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 16 if logical else 8)
    assert anchors.llama_cpp_default_threads() == 8
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 16 if logical else None)
    assert anchors.llama_cpp_default_threads() == 8  # hardware_concurrency, halved above 4
    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 2 if logical else None)
    assert anchors.llama_cpp_default_threads() == 2


# --- the plan ----
def test_sweep_is_clipped_and_deduplicated() -> None:
    assert anchors.sweep_layers([0, 3], 31) == [0, 1, 2, 3, 4, 5, 7]
    assert anchors.sweep_layers([33, 30], 33) == [26, 28, 29, 30, 31, 32, 33]
    assert anchors.sweep_layers([16, 16], 41) == [12, 14, 16, 18, 20]
    assert anchors.sweep_threads(9, CORES) == [9, 8, 16]
    assert anchors.sweep_threads(8, CORES) == [8, 16]


def _plan(
    model: Path, *, sweep: bool = False, fit: str = "-c 4096 -ngl 18", shape: str = "grid"
) -> dict[str, Any]:
    return anchors.build_plan(
        model,
        PROFILE,
        fit,
        free_mib=5544,
        total_mib=6144,
        floor=4096,
        sweep=sweep,
        cores=CORES,
        sweep_shape=shape,
    )


def test_plan_holds_every_anchor(demo_model: Path) -> None:
    plan = _plan(demo_model)
    by = {s["name"]: s for s in plan["settings"]}
    assert list(by) == [
        "dm-tune", "fit+cli-defaults", "fit+app", "fit+dm-tune", "ollama",
        "app:performance", "app:balanced", "app:cpu_fallback",
    ]  # fmt: skip
    assert {s["group"] for s in plan["settings"]} == {"dm-tune", "fit", "ollama", "app"}
    dm = by["dm-tune"]["llama"]
    assert dm == {"n_gpu_layers": 0, "n_ctx": 4096, "n_batch": 256, "n_threads": 2,
                  "use_mlock": True}  # fmt: skip
    cli = by["fit+cli-defaults"]["llama"]
    assert (cli["n_gpu_layers"], cli["n_ctx"], cli["n_batch"], cli["n_ubatch"]) == (
        18, 4096, 2048, 512,
    )  # fmt: skip
    assert cli["flash_attn"] is True and cli["use_mlock"] is False
    assert cli["n_threads"] == cli["n_threads_batch"] == anchors.llama_cpp_default_threads()
    app = by["fit+app"]["llama"]
    assert (app["n_gpu_layers"], app["n_ctx"], app["n_batch"], app["n_threads"]) == (
        18, 4096, 512, 6,
    )  # fmt: skip
    assert app["use_mlock"] is True and app["flash_attn"] is False
    assert by["fit+dm-tune"]["llama"] == {**dm, "n_gpu_layers": 18}
    # the app's profiles normalized as the study enqueues them: -1 and 35 = all 31 layers
    assert by["app:performance"]["llama"]["n_gpu_layers"] == 31
    assert by["app:balanced"]["llama"]["n_gpu_layers"] == 31
    assert by["app:cpu_fallback"]["llama"]["n_threads"] == 8  # capped at the 16 logical cores
    assert by["app:balanced"]["below_floor"] and by["app:balanced"]["llama"]["n_ctx"] == 2048
    assert "below the floor" in by["app:balanced"]["note"]
    assert not by["app:performance"]["below_floor"]
    assert by["ollama"]["llama"]["n_gpu_layers"] == 31 and "457 MiB" in by["ollama"]["note"]
    # a fit answer above the model's layers means all of them
    assert _plan(demo_model, fit="-c 4096 -ngl 99")["settings"][1]["llama"]["n_gpu_layers"] == 31


def test_sweep_cross_measures_layers_and_threads_through_dm_tunes_choice() -> None:
    pts = anchors.sweep_points([12, 14, 16], [9, 8, 16], (14, 9), "cross")
    assert pts == [(12, 9), (14, 9), (16, 9), (14, 8), (14, 16)]
    assert len(anchors.sweep_points([12, 14, 16], [9, 8, 16], (14, 9), "grid")) == 9
    with pytest.raises(UserError, match="--sweep-shape"):
        anchors.sweep_points([1], [1], (1, 1), "star")


def test_plan_sweep_cross(demo_model: Path) -> None:
    plan = _plan(demo_model, sweep=True, fit="-c 4096 -ngl 30", shape="cross")
    sweep = [s for s in plan["settings"] if s["group"] == "sweep"]
    assert len(sweep) == 7 + 2  # the layers at dm-tune's threads, two more thread counts


def test_plan_sweep(demo_model: Path) -> None:
    plan = _plan(demo_model, sweep=True, fit="-c 4096 -ngl 30")
    sweep = [s for s in plan["settings"] if s["group"] == "sweep"]
    layers = sorted({s["llama"]["n_gpu_layers"] for s in sweep})
    assert layers == [0, 2, 4, 26, 28, 30, 31]  # dm-tune 0 and fit 30, +-4 clipped at 31
    assert {s["llama"]["n_threads"] for s in sweep} == {2, 8, 16}
    assert len(sweep) == 7 * 3
    assert all(s["llama"]["flash_attn"] and s["llama"]["n_ctx"] == 4096 for s in sweep)
    assert all(s["llama"]["n_batch"] == 256 for s in sweep)  # the dm-tune tier's other knobs


# --- CLI: parsing and one-line errors ------------------------------------------------------------
def test_cli_errors_are_one_line(
    tmp_path: Path, demo_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    base = ["plan", "--model", str(demo_model), "--profile", str(PROFILE), "--free-mib", "5544",
            "--total-mib", "6144", "--out", str(out)]  # fmt: skip
    assert anchors.main([*base, "--fit-answer", "out of memory"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --fit-answer: no '-c N -ngl K' line") and err.count("\n") == 1
    assert anchors.main([*base, "--fit-answer", f"@{tmp_path / 'none.txt'}"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not out.exists()
    assert anchors.main(["measure", "--plan", str(tmp_path / "no.json"), "--model",
                         str(demo_model), "--storage", "sqlite:///x.db", "--out",
                         str(tmp_path / "r.json")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert (
        err == f"error: plan file not found: {tmp_path / 'no.json'}; write one with "
        "`anchors.py plan`\n"
    )
    assert anchors.main(["table", "--results", str(tmp_path / "no.json"), "--out",
                         str(tmp_path / "t.md")]) == 2  # fmt: skip
    assert "results file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        anchors.main(["plan", "--model", "m"])  # argparse: required options missing
    fit = tmp_path / "fit.txt"
    fit.write_text("log line\n-c 4096 -ngl 7\n", encoding="utf-8")
    assert anchors.main([*base, "--fit-answer", f"@{fit}"]) == 0
    assert json.loads(out.read_text())["fit_answer"]["n_gpu_layers"] == 7


# --- measure: real llama.cpp children on the CPU ----
@pytest.mark.slow
def test_measure_two_settings_interleaved(
    tmp_path: Path, demo_model: Path, workload_study: str
) -> None:
    storage = workload_study
    settings = [
        {"name": "a", "group": "dm-tune", "note": "", "below_floor": False,
         "llama": {"n_gpu_layers": 0, "n_ctx": 512, "n_batch": 64, "n_threads": 1}},
        {"name": "b", "group": "app", "note": "", "below_floor": True,
         "llama": {"n_gpu_layers": 0, "n_ctx": 32, "n_batch": 32, "n_threads": 1}},
        # the prompt overflows n_ctx 32: this child fails, the run goes on
    ]  # fmt: skip
    plan = {"version": 1, "floor": 512, "free_mib": 0, "total_mib": 1, "settings": settings}
    plan_path, out = tmp_path / "plan.json", tmp_path / "results.json"
    plan_path.write_text(json.dumps(plan), encoding="utf-8")
    rc = anchors.main(["measure", "--plan", str(plan_path), "--model", str(demo_model),
                       "--storage", storage, "--runs", "1", "--out", str(out)])  # fmt: skip
    assert rc == 0
    res = json.loads(out.read_text())
    assert [r["pass"] for r in res["runs"]] == [1, 1]
    by = {r["setting"]: r for r in res["runs"]}
    assert by["a"]["status"] == "ok" and by["a"]["gen_tok_s"] > 0 and by["a"]["load_s"] > 0
    assert by["a"]["ttft_ms"] > 0 and by["a"]["vram_mb"] is None  # no GPU here
    assert by["b"]["status"] == "failed" and by["b"]["reason"]
    assert res["summary"]["a"]["statuses"] == {"ok": 1}
    assert res["summary"]["b"]["gen_tok_s"]["median"] is None
    # a deadline already past: nothing more starts, what was there is kept
    cut = anchors.measure(plan, demo_model, res["workload"], tmp_path / "cut.json", runs=2,
                          launcher=ColdLauncher(), deadline_s=0.0,
                          echo=lambda *_: None)  # fmt: skip
    assert cut["runs"] == [] and "deadline" in cut["stopped"]
    assert json.loads((tmp_path / "cut.json").read_text())["stopped"] == cut["stopped"]


def test_passes_are_shuffled_with_a_fixed_seed(tmp_path: Path, demo_model: Path) -> None:
    """The order logic alone: a launcher that records the order and starts nothing."""
    order: list[str] = []

    class Recorder:
        def run(self, spec: TrialSpec, timeout_s: float, **_: Any) -> ChildResult:
            order.append(spec.params["name"])
            return ChildResult("oom", "out of memory: CUDA")

    names = [f"s{i}" for i in range(6)]
    plan = {"settings": [{"name": n, "llama": {"name": n}} for n in names]}
    res = anchors.measure(plan, demo_model, {}, tmp_path / "r.json", runs=3, launcher=Recorder(),
                          echo=lambda *_: None)  # fmt: skip
    passes = [order[i * 6 : (i + 1) * 6] for i in range(3)]
    assert all(sorted(p) == names for p in passes)  # every setting once per pass
    assert len({tuple(p) for p in passes}) > 1  # shuffled per pass
    again: list[str] = []
    order, keep = again, order
    anchors.measure(plan, demo_model, {}, tmp_path / "r2.json", runs=3, launcher=Recorder(),
                    echo=lambda *_: None)  # fmt: skip
    assert again == keep  # the same seed, the same order
    assert res["summary"]["s0"]["statuses"] == {"oom": 3}  # an OOM is a result


# --- table ----
def test_table_from_recorded_results(tmp_path: Path) -> None:
    res = anchors.load_results(RECORDED)
    rows = {r.setting: r for r in anchors.table_rows(res)}
    assert {"dm-tune", "fit+cli-defaults", "fit+app", "ollama"} <= set(rows)
    dm, cli = rows["dm-tune"], rows["fit+cli-defaults"]
    lo, tok, hi = dm.tok_s["min"], dm.tok_s["median"], dm.tok_s["max"]
    assert lo is not None and tok is not None and hi is not None and cli.tok_s["median"]
    assert lo <= tok <= hi
    tg = {t.name: t for t in anchors.targets(list(rows.values()))}
    r = tg["tok/s vs fit+cli-defaults"]
    assert r.measured == pytest.approx(tok / cli.tok_s["median"])
    assert r.measured is not None and r.met is (r.measured >= 1.1)
    best = max(x.tok_s["median"] or 0 for x in rows.values() if x.group == "sweep")
    assert tg["tok/s vs the sweep's best"].measured == pytest.approx(tok / best)
    out = tmp_path / "t.md"
    assert anchors.main(["table", "--results", str(RECORDED), "--results2", str(RECORDED),
                         "--study-wall-s", "432", "--out", str(out)]) == 0  # fmt: skip
    md = out.read_text()
    assert md.count("| setting | group |") == 2 and "study wall time: 432 s" in md
    assert "| tok/s vs fit+app |" in md


def test_a_table_of_a_plan_without_free_vram_or_floor(tmp_path: Path) -> None:
    # gpu_agree.py and cpu_tier.py plans carry their settings only (it raised KeyError)
    res = anchors.load_results(RECORDED)
    for key in ("free_mib", "total_mib", "floor"):
        res["plan"].pop(key, None)
    md = anchors.render(res, None)
    assert "Free VRAM" not in md and "context floor" not in md
    assert "fresh process(es) per setting" in md and "| dm-tune |" in md


def test_targets_met_not_met_and_unmeasured() -> None:
    def row(name: str, group: str, tok: float | None, ttft: float | None, status: str) -> Any:
        stat = {"median": tok, "min": tok, "max": tok}
        return anchors.Row(name, group, 1, 4096, 4, "512/512", True, stat, ttft, None, None,
                           status, False)  # fmt: skip

    rows = [
        row("dm-tune", "dm-tune", 30.0, 500.0, "ok 3/3"),
        row("fit+app", "fit", 10.0, 2000.0, "ok 3/3"),
        row("fit+cli-defaults", "fit", 29.0, 600.0, "ok 3/3"),
        row("sweep:a", "sweep", 30.5, 500.0, "ok 3/3"),
        row("sweep:b", "sweep", None, None, "OOM 3/3"),
    ]
    tg = {t.name: t for t in anchors.targets(rows)}
    assert tg["tok/s vs fit+app"].met is True and tg["tok/s vs fit+app"].measured == 3.0
    assert tg["tok/s vs fit+cli-defaults"].met is False
    assert tg["cold TTFT vs fit+cli-defaults"].met is False  # 0.83x > 0.6x
    assert tg["tok/s vs the sweep's best"].met is True  # 30 / 30.5 = 0.984
    rows[2] = row("fit+cli-defaults", "fit", None, None, "OOM 3/3")
    assert {t.name: t.met for t in anchors.targets(rows)}["tok/s vs fit+cli-defaults"] is None
    assert anchors._status({"runs": 3, "statuses": {"oom": 3}}) == "OOM 3/3"
