"""Bad input: one line naming the problem and its fix, exit code 2, no traceback, no files."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuner.cli import app

runner = CliRunner()


def _fails_cleanly(args: list[str], cwd: Path, *expected: str) -> str:
    r = runner.invoke(app, args)
    out = r.output.strip()
    assert r.exit_code == 2, out
    assert "Traceback" not in out
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out
    for e in expected:
        assert e in out
    assert not (cwd / "studies" / "dm-tune.db").exists()
    assert not list((cwd / "configs").glob("profiles/*.yaml"))
    return out


def test_missing_model(chdir_tmp: Path) -> None:
    _fails_cleanly(["run", "--model", "nope.gguf"], chdir_tmp, "model file not found", "--model")


def test_not_a_gguf(chdir_tmp: Path) -> None:
    f = chdir_tmp / "model.gguf"
    f.write_text("this is not a model")
    _fails_cleanly(["run", "--model", str(f)], chdir_tmp, "not a GGUF file")


def test_truncated_gguf(chdir_tmp: Path, demo_model: Path) -> None:
    f = chdir_tmp / "cut.gguf"
    f.write_bytes(demo_model.read_bytes()[:20_000_000])
    _fails_cleanly(["run", "--model", str(f)], chdir_tmp, "truncated", "download it again")


def test_unknown_key_in_search_space(chdir_tmp: Path, demo_model: Path) -> None:
    s = chdir_tmp / "space.yaml"
    s.write_text("version: 1\nn_gpu_layer: {low: 0, high: 5}\n")
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--search-space", str(s)],
        chdir_tmp,
        "unknown key 'n_gpu_layer'",
    )


def test_bad_range_in_workload(chdir_tmp: Path, demo_model: Path) -> None:
    w = chdir_tmp / "w.yaml"
    w.write_text("system_prompt: x\nmessage: y\nrepeats: 0\n")
    _fails_cleanly(["run", "--model", str(demo_model), "--workload", str(w)], chdir_tmp, "repeats")


def test_unknown_key_in_baselines(chdir_tmp: Path, demo_model: Path) -> None:
    b = chdir_tmp / "b.yaml"
    b.write_text(
        "version: 1\nprofiles:\n  fast: {n_gpu_layers: 1, n_ctx: 2048, n_batch: 8, "
        "n_threads: 2, use_mlok: true}\n"
    )
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--baselines", str(b)], chdir_tmp, "use_mlok"
    )


def test_broken_yaml(chdir_tmp: Path, demo_model: Path) -> None:
    w = chdir_tmp / "w.yaml"
    w.write_text("system_prompt: [unclosed\n")
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--workload", str(w)], chdir_tmp, "not valid YAML"
    )


@pytest.mark.parametrize("budget", ["0GB", "six", "-2GB", "6TB"])
def test_bad_vram_budget(chdir_tmp: Path, demo_model: Path, budget: str) -> None:
    _fails_cleanly(["run", "--model", str(demo_model), "--vram-budget", budget], chdir_tmp, "size")


def test_unwritable_studies_directory(chdir_tmp: Path, demo_model: Path) -> None:
    (chdir_tmp / "studies").write_text("a file where the directory should be")
    _fails_cleanly(
        ["run", "--model", str(demo_model)], chdir_tmp, "cannot write to the studies directory"
    )


@pytest.mark.parametrize(
    "url", ["nonsense", "sqlite:///:memory:", "postgresql+psycopg2://u:p@127.0.0.1:1/db"]
)
def test_bad_storage_url(chdir_tmp: Path, demo_model: Path, url: str) -> None:
    _fails_cleanly(["run", "--model", str(demo_model), "--storage", url], chdir_tmp, "storage")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--trials", "0", "--trials"),
        ("--latency", "hot", "--latency"),
        ("--prefer", "fastest", "--prefer"),
        ("--trial-timeout", "0", "--trial-timeout"),
    ],
)
def test_bad_options(
    chdir_tmp: Path, demo_model: Path, option: str, value: str, expected: str
) -> None:
    _fails_cleanly(["run", "--model", str(demo_model), option, value], chdir_tmp, expected)


def test_export_without_a_study(chdir_tmp: Path) -> None:
    _fails_cleanly(["export"], chdir_tmp, "no study database", "dm-tune run")


@pytest.mark.parametrize(
    ("min_ctx", "expected"),
    [
        ("lots", "--min-ctx must be a number of tokens or 'worst'"),
        ("0", "--min-ctx must be at least 1 token"),
        ("1024", "--min-ctx 1024 is below what the app needs"),
        ("16384", "above the model's trained context (8192 tokens)"),
    ],
)
def test_bad_min_ctx(chdir_tmp: Path, demo_model: Path, min_ctx: str, expected: str) -> None:
    """Checked against the model's own token counts, so after the probe's progress line."""
    space = chdir_tmp / "space.yaml"  # offers 16384, so only the model's trained context refuses it
    space.write_text("version: 1\nn_ctx: {choices: [1024, 2048, 4096, 8192, 16384]}\n")
    args = ["run", "--model", str(demo_model), "--search-space", str(space), "--min-ctx", min_ctx]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], r.stderr
    assert "Traceback" not in r.output
    assert not (chdir_tmp / "studies" / "dm-tune.db").exists()
    assert not list((chdir_tmp / "configs").glob("profiles/*.yaml"))


# issue 10: hostile names, files that are not what they claim, set-up that used to fail late


def _fails_after_probe(args: list[str], cwd: Path, expected: str) -> None:
    """Like _fails_cleanly for checks that need the model's probe: its progress line is on
    stdout, the error alone on stderr; no study is created."""
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], r.stderr
    assert "Traceback" not in r.output
    assert not (cwd / "studies").exists()
    assert not list((cwd / "configs").glob("profiles/*.yaml"))


HOSTILE_NAMES = [
    ("../../escaped", "path separator"),
    ("/tmp/dm-tune-absolute", "path separator"),
    ("sub/dir/name", "path separator"),
    ("..", "'..'"),
    ("a..b", "'..'"),
    ("x" * 101, "101 characters (at most 100)"),
    ("x" * 300, "300 characters (at most 100)"),
    ("bad\nname", "control character"),
    ("C:name", "drive letter"),
    ("", "empty"),
]


@pytest.mark.parametrize(("name", "expected"), HOSTILE_NAMES)
def test_hostile_study_names_are_refused_before_anything_runs(
    chdir_tmp: Path, demo_model: Path, name: str, expected: str
) -> None:
    deep = chdir_tmp / "a" / "b"
    deep.mkdir(parents=True)
    profile_dir = deep / "profiles"
    args = ["--study", name, "--profile-dir", str(profile_dir)]
    out = _fails_cleanly(["run", "--model", str(demo_model), *args], chdir_tmp, expected)
    assert "study name" in out and "Checking" not in out  # refused before the probe
    _fails_cleanly(["export", *args], chdir_tmp, expected)
    # only the test's own folders (the measurement lock lives in the lock folder, tests/conftest)
    made = [p.relative_to(chdir_tmp) for p in chdir_tmp.rglob("*")]
    assert sorted(str(p) for p in made if p.parts[0] != "locks") == ["a", "a/b"]
    assert not Path("/tmp/dm-tune-absolute.yaml").exists()


def test_a_hostile_study_name_in_a_real_process(tmp_path: Path, demo_model: Path) -> None:
    cmd = [sys.executable, "-m", "tuner.cli", "run", "--model", str(demo_model)]
    r = subprocess.run(
        [*cmd, "--study", "../../escaped"], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.startswith("error: study name '../../escaped' contains a path separator")
    assert len(r.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent.parent / "escaped.yaml").exists()


def test_storage_that_is_not_a_sqlite_file(chdir_tmp: Path, demo_model: Path) -> None:
    f = chdir_tmp / "notes.db"
    f.write_text("my notes, not a database\n")
    args = ["--storage", f"sqlite:///{f}"]
    _fails_cleanly(["run", "--model", str(demo_model), *args], chdir_tmp, "not a SQLite database")
    _fails_cleanly(["export", *args], chdir_tmp, "not a SQLite database")
    assert f.read_text() == "my notes, not a database\n"


def test_storage_that_is_a_directory(chdir_tmp: Path, demo_model: Path) -> None:
    d = chdir_tmp / "studies.db"
    d.mkdir()
    for cmd in (["run", "--model", str(demo_model)], ["export"]):
        _fails_cleanly([*cmd, "--storage", f"sqlite:///{d}"], chdir_tmp, "points at the directory")
    assert list(d.iterdir()) == []


def test_the_storage_check_creates_no_folder(chdir_tmp: Path) -> None:
    """Everything is checked (here the model, after the storage) before anything is made."""
    url = f"sqlite:///{chdir_tmp}/new/sub/x.db"
    _fails_cleanly(["run", "--model", "nope.gguf", "--storage", url], chdir_tmp, "model file")
    assert not (chdir_tmp / "new").exists()


@pytest.mark.parametrize(
    ("url", "module", "package"),
    [
        ("mysql://u:p@127.0.0.1:1/db", "MySQLdb", "pip install mysqlclient"),
        ("mysql+pymysql://u:p@127.0.0.1:1/db", "pymysql", "pip install PyMySQL"),
        ("postgresql://u:p@127.0.0.1:1/db", "psycopg", "pip install 'psycopg[binary]'"),
    ],
)
def test_the_driver_hint_names_the_dialects_driver(
    chdir_tmp: Path,
    demo_model: Path,
    url: str,
    module: str,
    package: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if importlib.util.find_spec(module) is not None:  # installed here (psycopg: the extra)
        monkeypatch.setitem(sys.modules, module, None)  # `import` now fails as if it were not
    out = _fails_cleanly(["run", "--model", str(demo_model), "--storage", url], chdir_tmp, package)
    assert "psycopg2" not in out


@pytest.mark.parametrize("template", ["{oops}", "{0}", "{}", "{text.__class__}", "{"])
def test_a_workload_template_with_another_placeholder(
    chdir_tmp: Path, demo_model: Path, quick_workload: Path, template: str
) -> None:
    w = chdir_tmp / "w.yaml"
    w.write_text(
        quick_workload.read_text(encoding="utf-8") + f"template: {{user: '{template}'}}\n",
        encoding="utf-8",
    )
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--workload", str(w)], chdir_tmp, "'template':", "{{"
    )


def test_a_start_point_with_a_wrong_type_is_refused_before_the_study(
    chdir_tmp: Path, demo_model: Path
) -> None:
    b = chdir_tmp / "b.yaml"
    b.write_text(
        "version: 1\nprofiles:\n  p: {n_gpu_layers: 0, n_ctx: 2048, n_batch: 8, n_threads: 1}\n"
        "starts:\n  s: {from: p, gpu_only: false, set: {n_batch: 'abc'}}\n"
    )
    _fails_after_probe(
        ["run", "--model", str(demo_model), "--baselines", str(b)],
        chdir_tmp,
        "start 's' sets n_batch to 'abc'; it must be an integer",
    )


def test_a_thread_range_above_this_machines_cores(chdir_tmp: Path, demo_model: Path) -> None:
    from tuner.machine import detect

    cores = detect().logical_cores
    s = chdir_tmp / "space.yaml"
    s.write_text(f"version: 1\nn_threads: {{low: {cores + 6}, high: auto}}\n")
    _fails_after_probe(
        ["run", "--model", str(demo_model), "--search-space", str(s)],
        chdir_tmp,
        f"n_threads low {cores + 6} is above the {cores} logical cores",
    )


@pytest.mark.parametrize(
    ("option", "text", "supported"),
    [
        ("--workload", "version: 99\nsystem_prompt: x\nmessage: y\n", "reads version 2"),
        ("--search-space", "version: 99\n", "reads version 1"),
        ("--baselines", "version: 99\nprofiles: {}\n", "reads version 1"),
    ],
)
def test_unknown_config_versions(
    chdir_tmp: Path, demo_model: Path, option: str, text: str, supported: str
) -> None:
    f = chdir_tmp / "c.yaml"
    f.write_text(text)
    _fails_cleanly(
        ["run", "--model", str(demo_model), option, str(f)], chdir_tmp, "version 99", supported
    )


PAYLOAD = "!!python/object/apply:os.system ['touch {marker}']"


@pytest.mark.parametrize(
    ("option", "text"),
    [
        ("--workload", "version: 2\nsystem_prompt: {payload}\nmessage: y\n"),
        ("--search-space", "version: 1\nn_threads: {payload}\n"),
        ("--baselines", "version: 1\nprofiles: {payload}\n"),
    ],
)
def test_yaml_tags_are_refused_and_never_run(
    chdir_tmp: Path, demo_model: Path, option: str, text: str
) -> None:
    marker = chdir_tmp / "marker"
    f = chdir_tmp / "c.yaml"
    f.write_text(text.format(payload=PAYLOAD.format(marker=marker)))
    _fails_cleanly(
        ["run", "--model", str(demo_model), option, str(f)],
        chdir_tmp,
        "YAML tags are not allowed (!!python/object/apply:os.system",
    )
    assert not marker.exists()


def test_yaml_tags_in_a_profile_never_run_in_a_real_process(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    p = tmp_path / "profile.yaml"
    p.write_text("version: 2\nmodel: " + PAYLOAD.format(marker=marker) + "\n")
    r = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "profile", "select", str(p), "--free-vram", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and "YAML tags are not allowed" in r.stderr
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr
    assert not marker.exists()


def test_trials_above_the_limit(chdir_tmp: Path, demo_model: Path) -> None:
    _fails_cleanly(
        ["run", "--model", str(demo_model), "--trials", "99999999999"],
        chdir_tmp,
        "--trials must be between 1 and 100000",
    )


def _no_nvidia_gpu() -> bool:
    from objectives.nvml import list_gpus

    return not list_gpus()


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        pytest.param(
            "0",
            "NVML finds none here",
            marks=pytest.mark.skipif(not _no_nvidia_gpu(), reason="needs a machine without GPU"),
        ),
        ("0,0", "GPU 0 is listed twice"),
        ("zero", "give GPU indices separated by commas"),
    ],
)
def test_bad_gpus(chdir_tmp: Path, demo_model: Path, gpus: str, expected: str) -> None:
    """`--gpus` is checked against NVML's GPUs before any worker starts (none here)."""
    _fails_cleanly(["run", "--model", str(demo_model), "--gpus", gpus], chdir_tmp, expected)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DM_TUNE_HEARTBEAT_S", "soon", "DM_TUNE_HEARTBEAT_S='soon' is not a number of seconds"),
        ("DM_TUNE_HEARTBEAT_GRACE_S", "0", "set it to a whole number of at least 1"),
        ("DM_TUNE_HEARTBEAT_S", "600", "must be longer than DM_TUNE_HEARTBEAT_S (600 s)"),
    ],
)
def test_bad_heartbeat_timings_are_refused_with_the_options(
    chdir_tmp: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    """Checked before the model (missing here) or anything else is read."""
    monkeypatch.setenv(name, value)
    _fails_cleanly(["run", "--model", "nope.gguf"], chdir_tmp, expected)


def _fails_in_a_process(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    """`dm-tune ARGS` as a real process in the empty folder `cwd`: exit 2, nothing on stdout,
    one line on stderr, nothing made in `cwd`."""
    cwd.mkdir(exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True, cwd=cwd, env=env
    )
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert list(cwd.iterdir()) == []
    return r.stderr


STORAGE_COMMANDS = [["run"], ["report"], ["export"], ["trials"]]


@pytest.mark.skipif(importlib.util.find_spec("psycopg") is None, reason="psycopg not installed")
def test_a_postgresql_port_nothing_listens_on(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a free port, closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql+psycopg://dm_tune:not-this-secret@127.0.0.1:{port}/dm_tune"
    for cmd in STORAGE_COMMANDS:
        err = _fails_in_a_process([*cmd, "--storage", url], tmp_path / "cwd", dict(os.environ))
        assert f"port {port} failed: Connection refused" in err, err
        assert err.endswith(
            f"no database server answers at 127.0.0.1:{port}; start it, or fix the host and port\n"
        )
        assert "not-this-secret" not in err and "dm_tune:***@" in err


@pytest.mark.postgres
@pytest.mark.parametrize("source", ["url", "PGPASSWORD"])
def test_a_wrong_postgresql_password(pg_url: str, tmp_path: Path, source: str) -> None:
    from sqlalchemy.engine import make_url

    wrong = "wrong-" + os.environ["PGPASSWORD"][::-1]
    env = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    env["HOME"] = str(tmp_path / "cwd")  # no ~/.pgpass either
    url = pg_url
    if source == "url":
        url = make_url(pg_url).set(password=wrong).render_as_string(hide_password=False)
    else:
        env["PGPASSWORD"] = wrong
    for cmd in STORAGE_COMMANDS:
        err = _fails_in_a_process([*cmd, "--storage", url], tmp_path / "cwd", env)
        assert "password authentication failed for user" in err, err
        assert "check the user name and the password given in the URL" in err
        assert "PGPASSWORD or ~/.pgpass" in err
        assert wrong not in err and os.environ["PGPASSWORD"] not in err
