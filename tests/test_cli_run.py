"""`dm-tune run` end to end: real llama.cpp trials on the real demo GGUF, a real SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from tests.conftest import stand_in
from tuner.cli import app
from tuner.errors import StudyAborted, UserError
from tuner.study import RunSettings, tune

pytestmark = pytest.mark.slow
runner = CliRunner()


def _args(model: Path, workload: Path, space: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--model",
        str(model),
        "--workload",
        str(workload),
        "--search-space",
        str(space),
        *extra,
    ]


def _load(db: Path) -> optuna.Study:
    summaries = optuna.get_all_study_summaries(f"sqlite:///{db}")
    assert len(summaries) == 1
    return optuna.load_study(study_name=summaries[0].study_name, storage=f"sqlite:///{db}")


def test_run_then_resume(
    demo_model: Path, quick_workload: Path, small_space: Path, chdir_tmp: Path
) -> None:
    r = runner.invoke(
        app,
        _args(
            demo_model, quick_workload, small_space, "--trials", "4", "--no-export", "--seed", "1"
        ),
    )
    assert r.exit_code == 0, r.output
    assert "[4/4]" in r.output and "Pareto front" in r.output
    db = chdir_tmp / "studies" / "dm-tune.db"
    study = _load(db)
    trials = study.get_trials()
    assert len(trials) == 4
    assert [t.user_attrs.get("baseline") for t in trials[:3]] == [
        "performance",
        "balanced",
        "cpu_fallback",
    ]
    ok = [t for t in trials if t.state.name == "COMPLETE"]
    assert ok and all(t.user_attrs["metrics"]["vram_mb"] is None for t in ok)
    assert study.user_attrs["model"]["sha256"]
    # the legacy attribute optuna-dashboard 0.21 reads, and Optuna 5's own
    assert all(t.system_attrs["constraints"][0] < 0 for t in ok)
    assert all(t.constraints for t in ok)

    r2 = runner.invoke(
        app, _args(demo_model, quick_workload, small_space, "--trials", "6", "--no-export")
    )
    assert r2.exit_code == 0, r2.output
    assert "Resuming study" in r2.output and "4 trials kept, 2 to run" in r2.output
    assert len(_load(db).get_trials()) == 6

    r3 = runner.invoke(
        app, _args(demo_model, quick_workload, small_space, "--trials", "6", "--no-export")
    )
    assert r3.exit_code == 0 and "nothing to run" in r3.output


def test_resume_with_other_settings_is_refused(
    demo_model: Path, quick_workload: Path, small_space: Path, chdir_tmp: Path
) -> None:
    base = _args(
        demo_model, quick_workload, small_space, "--trials", "1", "--no-export", "--no-baselines"
    )
    assert runner.invoke(app, base).exit_code == 0
    r = runner.invoke(app, [*base, "--vram-budget", "4GB"])
    assert r.exit_code == 2
    assert "made with other settings" in r.output and "vram_budget_mb 6144.0 -> 4096.0" in r.output


def _settings(model: Path, workload: Path, space: Path, tmp: Path, **kw: object) -> RunSettings:
    return RunSettings(
        model=model,
        workload=workload,
        search_space=space,
        baselines=None,
        storage=f"sqlite:///{tmp}/s.db",
        export=False,
        **kw,
    )  # type: ignore[arg-type]


def test_a_build_that_crashes_every_trial_stops_the_study(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    s = _settings(
        demo_model,
        quick_workload,
        small_space,
        tmp_path,
        trials=50,
        child_argv=stand_in("crash_on_trial"),
    )
    with pytest.raises(StudyAborted, match=r"first 3 trials all crashed.*SIGSEGV.*rebuild"):
        tune(s, echo=lambda _: None)
    study = _load(tmp_path / "s.db")
    assert len(study.get_trials()) == 3  # not 50
    assert all(t.user_attrs["status"] == "crashed" for t in study.get_trials())


def test_a_build_that_crashes_at_once_is_diagnosed_before_any_study(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    s = _settings(
        demo_model, quick_workload, small_space, tmp_path, child_argv=stand_in("crash_always")
    )
    with pytest.raises(
        UserError, match=r"crashed \(SIGSEGV\) during smoke decode.*GGML_NATIVE=OFF"
    ):
        tune(s, echo=lambda _: None)
    assert not (tmp_path / "s.db").exists()


def test_hanging_trials_time_out_and_the_study_goes_on(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    s = _settings(
        demo_model,
        quick_workload,
        small_space,
        tmp_path,
        trials=2,
        trial_timeout_s=2.0,
        max_same_failures=5,
        child_argv=stand_in("hang"),
    )
    summary = tune(s, echo=lambda _: None)
    assert summary.ran == 2
    trials = _load(tmp_path / "s.db").get_trials()
    assert [t.user_attrs["status"] for t in trials] == ["timeout", "timeout"]


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT like a terminal's Ctrl-C")
def test_ctrl_c_keeps_the_study_and_a_rerun_continues(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    """Ctrl-C right after the second trial's line, with 38 trials to go (even reused ones cost
    storage round trips): the signal lands while the study still runs, whatever the machine's
    load, instead of after a sleep that a fast machine outruns."""
    db = tmp_path / "s.db"
    cmd = [
        sys.executable,
        "-m",
        "tuner.cli",
        *_args(demo_model, quick_workload, small_space),
        "--trials",
        "40",  # far more than the 2 finished when Ctrl-C comes: it can't finish first
        "--no-export",
        "--no-baselines",
        "--storage",
        f"sqlite:///{db}",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        # as in a terminal: a runner started in the background (`cmd &`) has SIGINT ignored,
        # and the child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("[2/40]"):  # an event, not a sleep: trial 3 has just begun
            proc.send_signal(signal.SIGINT)
            break
    out = "".join(lines) + proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 130, out
    assert "Run the same command again to resume" in out
    study = _load(db)
    finished = [
        t for t in study.get_trials() if t.user_attrs.get("status") not in (None, "interrupted")
    ]
    assert f"Interrupted. {len(finished)} finished trials are kept" in out
    states = [t.state.name for t in study.get_trials()]
    assert "RUNNING" not in states
    kept = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(kept) >= 2
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Resuming study" in again.stdout
    trials = _load(db).get_trials()
    counted = [t for t in trials if t.user_attrs.get("status") != "interrupted"]
    assert len(counted) == 40
    interrupted = [t for t in trials if t.user_attrs.get("status") == "interrupted"]
    for t in interrupted:  # re-run, not lost
        assert any(o.user_attrs.get("retry_of") == t.number for o in trials)


def test_run_confirms_and_exports_a_profile_that_llama_loads(
    demo_model: Path, quick_workload: Path, small_space: Path, chdir_tmp: Path
) -> None:
    r = runner.invoke(
        app,
        _args(
            demo_model,
            quick_workload,
            small_space,
            "--trials",
            "4",
            "--confirm",
            "2",
            "--confirm-runs",
            "1",
            "--no-baselines",
        ),
    )
    assert r.exit_code == 0, r.output
    assert "Confirming the top 2 candidates" in r.output and "Profile written" in r.output
    profiles = list((chdir_tmp / "configs" / "profiles").glob("*.yaml"))
    assert len(profiles) == 1
    from tuner.profile import load_profile, select_profile

    prof = load_profile(profiles[0])
    assert prof.model.sha256 and prof.provenance.llama_cpp_version
    assert [t.name for t in prof.tiers] == ["cpu_fallback"]  # a CPU machine: one CPU tier
    study = _load(chdir_tmp / "studies" / "dm-tune.db")
    confirmed = study.user_attrs["confirmed"]
    assert prof.tiers[0].measured is not None
    assert str(prof.tiers[0].measured.trial) in confirmed  # the exported winner was re-measured
    keys = select_profile(profiles[0], model_path=demo_model)
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(demo_model), **keys, verbose=False)
    assert llm.n_ctx() == keys["n_ctx"]
    # `dm-tune export` alone writes the same profile again, atomically
    r2 = runner.invoke(app, ["export", "--prefer", "throughput"])
    assert r2.exit_code == 0, r2.output
    assert not list((chdir_tmp / "configs" / "profiles").glob(".*.tmp"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dashboard_serves_the_study_with_its_constraints(
    demo_model: Path, quick_workload: Path, small_space: Path, chdir_tmp: Path
) -> None:
    """A real optuna-dashboard server on a real study: trials, and the VRAM constraint it reads."""
    import json
    import urllib.request

    r = runner.invoke(
        app,
        _args(
            demo_model,
            quick_workload,
            small_space,
            "--trials",
            "2",
            "--no-export",
            "--no-baselines",
        ),
    )
    assert r.exit_code == 0, r.output
    port = _free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "tuner.cli", "dashboard", "--port", str(port)],
        cwd=chdir_tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        try:
            base = f"http://127.0.0.1:{port}/api/studies"
            studies = None
            for _ in range(150):
                try:
                    with urllib.request.urlopen(base) as resp:
                        studies = json.loads(resp.read())["study_summaries"]
                    break
                except OSError:
                    time.sleep(0.2)
            assert studies, "optuna-dashboard did not answer"
            with urllib.request.urlopen(f"{base}/{studies[0]['study_id']}") as resp:
                data = json.loads(resp.read())
            trials = data["trials"]
            assert len(trials) == 2
            assert all(
                t["constraints"] and t["constraints"][0] < 0
                for t in trials
                if t["state"] == "Complete"
            )
            assert any(a["key"] == "metrics" for a in trials[0]["user_attrs"])
        finally:
            server.terminate()
            server.wait(timeout=10)


def test_dashboard_refuses_a_missing_database(chdir_tmp: Path) -> None:
    r = runner.invoke(app, ["dashboard"])
    assert r.exit_code == 2 and "no study database" in r.output
    assert not (chdir_tmp / "studies" / "dm-tune.db").exists()


def test_identical_settings_are_never_measured_twice(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    """8 distinct settings in the space, 14 trials: the rest reuse earlier results."""
    s = _settings(
        demo_model,
        quick_workload,
        small_space,
        tmp_path,
        trials=14,
        child_argv=stand_in("canned"),
        prune=False,
    )
    tune(s, echo=lambda _: None)
    trials = _load(tmp_path / "s.db").get_trials()
    reused = [t for t in trials if t.user_attrs["status"] == "reused"]
    assert len(reused) >= 14 - 8
    for t in reused:
        src = trials[t.user_attrs["reused_from"]]
        assert t.values == src.values and t.user_attrs["key"] == src.user_attrs["key"]
    assert len({t.user_attrs["key"] for t in trials if t.user_attrs["status"] == "ok"}) == len(
        [t for t in trials if t.user_attrs["status"] == "ok"]
    )


def test_warm_latency_can_be_the_objective(
    demo_model: Path, quick_workload: Path, small_space: Path, chdir_tmp: Path
) -> None:
    r = runner.invoke(
        app,
        [
            *_args(demo_model, quick_workload, small_space),
            "--trials",
            "1",
            "--latency",
            "warm",
            "--no-baselines",
            "--no-export",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "warm TTFT" in r.output
    t = _load(chdir_tmp / "studies" / "dm-tune.db").get_trials()[0]
    m = t.user_attrs["metrics"]
    assert t.values == [m["gen_tok_s"], m["warm_ttft_ms"]]
    # a figure of its own, not the cold one (no speed comparison: the machine may be busy)
    assert m["warm_ttft_ms"] > 0 and m["warm_ttft_ms"] != m["ttft_ms"]


def test_the_apps_profile_is_re_measured_side_by_side_and_one_below_the_floor_never_wins(
    demo_model: Path, quick_workload: Path, small_space: Path, chdir_tmp: Path
) -> None:
    """The before/after figures come from one interleaved confirmation session; an app profile
    whose n_ctx is below the context floor is measured (as the app runs it) but infeasible."""
    from tuner.profile import load_profile
    from tuner.profile.export import before_after

    baselines = chdir_tmp / "baselines.yaml"
    baselines.write_text(
        "version: 1\nprofiles:\n"
        "  performance: {n_gpu_layers: -1, n_ctx: 512, n_batch: 128, n_threads: 2}\n"
        "  tiny: {n_gpu_layers: -1, n_ctx: 128, n_batch: 32, n_threads: 2}\n"
    )
    args = _args(demo_model, quick_workload, small_space, "--trials", "5", "--seed", "3")
    args += ["--confirm", "2", "--confirm-runs", "2", "--baselines", str(baselines)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "Context floor: n_ctx >= 256 (steady)" in r.output
    study = _load(chdir_tmp / "studies" / "dm-tune.db")
    trials = study.get_trials()
    tiny = next(t for t in trials if t.user_attrs.get("baseline") == "tiny")
    assert tiny.state == optuna.trial.TrialState.COMPLETE  # measured...
    assert tiny.user_attrs["llama_kwargs"]["n_ctx"] == 128 == tiny.user_attrs["app_n_ctx"]
    assert tiny.constraints["n_ctx_below_floor"] == 256 - 128  # ...and infeasible
    assert tiny.system_attrs["constraints"][1] == 128  # the dashboard's legacy list too
    sampled = [t for t in trials if not ({"baseline", "start"} & set(t.user_attrs))]
    assert all(t.params["n_ctx"] >= 256 for t in sampled)  # never sampled below the floor
    prof = load_profile(next((chdir_tmp / "configs" / "profiles").glob("*.yaml")))
    assert prof.version == 2 and prof.conversation is not None
    assert prof.conversation.min_ctx == 256 and prof.conversation.turns_kept == 1
    assert all(t.llama.n_ctx >= 256 for t in prof.tiers)
    assert tiny.number not in prof.provenance.trials
    cost = prof.conversation.floor_cost  # what the floor cost, recorded in the profile
    assert cost is not None and cost["best_below_floor"]["trial"] == tiny.number
    assert cost["best_below_floor"]["n_ctx"] == 128
    assert "What the floor cost" in r.output
    # before/after: the app's profile was measured in the same session, interleaved
    ref = study.user_attrs["reference_runs"]["1"]
    assert ref["status"] == "ok" and ref["trial"] == 0 and ref["runs"] == 2
    order = ref["order"]
    half = len(order) // 2
    assert order[:half] == order[half:][::-1] and order.count(0) == 2
    default = prof.tier(prof.default_tier)
    assert default.measured is not None
    ba = before_after(study, default.measured.trial)
    assert ba is not None and ba.session == 1
    assert list(ba.app_values) == ref["values"]
    assert "re-measured side by side, confirmation session 1" in r.output


def test_a_full_study_database_stops_the_run_with_one_line_and_it_resumes(
    demo_model: Path, quick_workload: Path, small_space: Path, chdir_tmp: Path
) -> None:
    """The database's disk fills mid-run: SQLite's max_page_count (a per-connection limit,
    set on every connection the run opens) stands in for a full file system."""
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    db = chdir_tmp / "studies" / "dm-tune.db"
    base = _args(demo_model, quick_workload, small_space, "--no-export", "--no-baselines")
    assert runner.invoke(app, [*base, "--trials", "1"]).exit_code == 0
    with sqlite3.connect(db) as c:
        pages = c.execute("PRAGMA page_count").fetchone()[0]

    def full(dbapi_conn: object, _record: object) -> None:
        dbapi_conn.execute(f"PRAGMA max_page_count = {pages}")  # type: ignore[attr-defined]

    event.listen(Engine, "connect", full)
    try:
        r = runner.invoke(app, [*base, "--trials", "20"])
    finally:
        event.remove(Engine, "connect", full)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the study database"), r.stderr
    assert "database or disk is full" in err[0] and "run the same command again" in err[0]
    assert "Traceback" not in r.output
    complete = [t for t in _load(db).get_trials() if t.state.name == "COMPLETE"]
    assert len(complete) >= 1  # the first run's trial is kept

    trials = _load(db).get_trials()
    again = runner.invoke(app, [*base, "--trials", str(len(trials) + 1)])
    assert again.exit_code == 0, again.output
    assert "Resuming study" in again.output
    kept = {t.number for t in _load(db).get_trials() if t.state.name == "COMPLETE"}
    assert {t.number for t in complete} <= kept  # nothing finished was lost


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_export_reads_a_read_only_database(
    demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    """Exported by another user (nobody, when the tests run as root, who ignores modes) from a
    database and folder they can only read; the profile gets the umask's mode (0644 here)."""
    import shutil
    import tempfile

    s = _settings(
        demo_model, quick_workload, small_space, tmp_path, trials=2, child_argv=stand_in("canned")
    )
    tune(s, echo=lambda _: None)
    shared = Path(tempfile.mkdtemp(prefix="dm-tune-ro-"))  # tmp_path's parents are 0700
    try:
        (shared / "studies").mkdir()
        db = shared / "studies" / "s.db"
        shutil.copy(tmp_path / "s.db", db)
        out = shared / "profiles"
        out.mkdir()
        db.chmod(0o444)
        db.parent.chmod(0o555)
        out.chmod(0o777)
        shared.chmod(0o755)
        as_other = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if os.geteuid() != 0:
            as_other = []
        else:
            assert shutil.which("setpriv"), "setpriv (util-linux) is needed to run as nobody"
        cmd = [sys.executable, "-m", "tuner.cli", "export", "--storage", f"sqlite:///{db}"]
        r = subprocess.run(
            [*as_other, *cmd, "--profile-dir", str(out)],
            capture_output=True,
            text=True,
            cwd=shared,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        (profile,) = out.glob("*.yaml")
        umask = os.umask(0)
        os.umask(umask)
        assert profile.stat().st_mode & 0o777 == 0o666 & ~umask
        assert sorted(p.name for p in db.parent.iterdir()) == ["s.db"]  # no journal left
    finally:
        db.parent.chmod(0o755)
        shutil.rmtree(shared)
