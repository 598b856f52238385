"""`dm-tune dashboard` without a browser: the URL it prints, passwords, bad input."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tuner.cli import app, dashboard_cmd

ROOT = Path(__file__).resolve().parents[3]
STUDY_DB = ROOT / "docs" / "benchmarks" / "data" / "cpu-demo-3.db"
runner = CliRunner()


@pytest.fixture
def storage(tmp_path: Path) -> str:
    db = tmp_path / "study.db"
    shutil.copyfile(STUDY_DB, db)
    return f"sqlite:///{db}"


def _dashboard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuner.cli", "dashboard", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_prints_the_url_it_serves(storage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bound first, then the URL with the port it got (Ctrl-C here comes at once)."""

    def interrupted(self: dashboard_cmd._Server) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dashboard_cmd._Server, "serve_forever", interrupted)
    r = runner.invoke(app, ["dashboard", "--storage", storage, "--port", "0"])
    assert r.exit_code == 0, r.output
    first = r.output.splitlines()[0]
    assert first.startswith(f"Serving {storage} at http://127.0.0.1:")
    assert int(first.split("127.0.0.1:")[1].split("/")[0]) > 0


def test_a_password_is_never_printed_when_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-ins for a PostgreSQL server (none here): the storage check and optuna-dashboard's
    app; the URL line is dm-tune's own."""
    monkeypatch.setattr(dashboard_cmd, "_check", lambda storage: None)
    monkeypatch.setattr("optuna_dashboard.wsgi", lambda storage: lambda env, start: [])

    def interrupted(self: dashboard_cmd._Server) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dashboard_cmd._Server, "serve_forever", interrupted)
    url = "postgresql://bob:s3cret@db.example:5432/studies"
    r = runner.invoke(app, ["dashboard", "--storage", url, "--port", "0"])
    assert r.exit_code == 0, r.output
    assert "s3cret" not in r.output
    assert r.output.startswith("Serving postgresql://bob:***@db.example:5432/studies at http://")


def test_a_server_that_fails_is_one_line_without_its_password() -> None:
    r = _dashboard("--storage", "postgresql+psycopg2://bob:s3cret@127.0.0.1:1/db")
    _one_masked_line(r)


def test_a_url_optuna_dashboard_refuses_is_one_line_without_its_password(storage: str) -> None:
    """SQLite takes no password: dm-tune's check passes it, optuna-dashboard refuses it."""
    r = _dashboard("--storage", storage.replace("sqlite:///", "sqlite://bob:s3cret@//"))
    _one_masked_line(r)


def _one_masked_line(r: subprocess.CompletedProcess[str]) -> None:
    assert r.returncode == 2, r.stderr
    assert "s3cret" not in r.stdout + r.stderr
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert "bob:***@" in r.stderr


def test_a_port_in_use_is_one_line(storage: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _dashboard("--storage", storage, "--port", str(port))
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr == (
        f"error: port {port} on 127.0.0.1 is in use; pass another with --port (0: any free one)\n"
    )
