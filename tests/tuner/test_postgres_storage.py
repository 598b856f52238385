"""Studies on a real PostgreSQL server (tests/pg.py): a run with stand-in trial children is read
back by `trials`, `export` and `report`, and the password, wherever it comes from (the URL,
PGPASSWORD, ~/.pgpass), appears in nothing printed, written or stored."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from tests.conftest import stand_in
from tests.pg import libpq_conninfo
from tuner.cli import app
from tuner.study import RunSettings, tune

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
]  # psycopg's warning about connections Optuna leaves open: pyproject.toml's filterwarnings
runner = CliRunner()


def _run_and_read_back(
    storage: str, model: Path, workload: Path, space: Path, tmp_path: Path
) -> tuple[str, list[Path]]:
    """`dm-tune run` (as tune(), the child a stand-in), then trials/export/report on the same URL:
    everything printed, and the files written."""
    printed: list[str] = []
    settings = RunSettings(
        model=model,
        workload=workload,
        search_space=space,
        baselines=None,
        storage=storage,
        export=False,
        trials=3,
        child_argv=stand_in("canned"),
        prune=False,
    )  # type: ignore[call-arg]
    tune(settings, echo=printed.append)
    profile = tmp_path / "profile.yaml"
    html = tmp_path / "report.html"
    csv = tmp_path / "trials.csv"
    for args in (
        ["trials", "--storage", storage],
        ["trials", "--storage", storage, "--format", "csv", "-o", str(csv)],
        ["export", "--storage", storage, "--output", str(profile)],
        ["report", "--storage", storage, "--output", str(html)],
    ):
        r = runner.invoke(app, args)
        assert r.exit_code == 0, r.output
        printed.append(r.output)
    return "\n".join(printed), [profile, html, csv]


def _stored_text(conninfo: str) -> str:
    """Every text column of every table in the study database, as one string."""
    out: list[str] = []
    with psycopg.connect(conninfo) as conn:
        cols = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
        ).fetchall()
        assert cols, "no Optuna tables found"
        for table, column in cols:
            rows = conn.execute(f'SELECT "{column}" FROM "{table}"').fetchall()  # type: ignore[arg-type]
            out.extend(str(v) for (v,) in rows if v is not None)
    return "\n".join(out)


def test_a_study_on_postgresql_runs_and_is_read_back(
    pg_url: str, demo_model: Path, quick_workload: Path, small_space: Path, tmp_path: Path
) -> None:
    _printed, (profile, html, csv) = _run_and_read_back(
        pg_url, demo_model, quick_workload, small_space, tmp_path
    )
    assert profile.is_file() and html.is_file()
    rows = csv.read_text(encoding="utf-8").splitlines()
    assert len(rows) >= 1 + 3  # header, the 3 trials (and any confirmation rows)
    import optuna

    summaries = optuna.get_all_study_summaries(pg_url)
    assert len(summaries) == 1 and summaries[0].n_trials >= 3


@pytest.mark.parametrize("source", ["url", "PGPASSWORD", "pgpass"])
def test_the_password_is_never_printed_written_or_stored(
    source: str,
    pg_url: str,
    demo_model: Path,
    quick_workload: Path,
    small_space: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = os.environ["PGPASSWORD"]
    url = make_url(pg_url)
    storage = pg_url
    if source == "url":
        storage = url.set(password=password).render_as_string(hide_password=False)
        monkeypatch.delenv("PGPASSWORD")
    elif source == "pgpass":
        home = tmp_path / "home"
        home.mkdir()
        pgpass = home / ".pgpass"
        pgpass.write_text(f"{url.host}:{url.port}:*:{url.username}:{password}\n")
        pgpass.chmod(0o600)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("PGPASSWORD")
        monkeypatch.delenv("PGPASSFILE", raising=False)
    printed, files = _run_and_read_back(storage, demo_model, quick_workload, small_space, tmp_path)
    assert password not in printed
    for f in files:
        assert password not in f.read_text(encoding="utf-8"), f.name
    monkeypatch.setenv("PGPASSWORD", password)
    assert password not in _stored_text(libpq_conninfo(url))
